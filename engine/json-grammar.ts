import { getLlama, type Llama } from 'node-llama-cpp'
import { NODE_LLAMA_OPTIONS } from './llama-cpp/node-binding.js'

/** A JSON schema uses a feature that the grammar cannot enforce; `path` says where (a JSON pointer). */
export class UnsupportedSchemaError extends Error {
  static readonly code = 'ERR_UNSUPPORTED_SCHEMA'
  readonly code = UnsupportedSchemaError.code
  override readonly name = 'UnsupportedSchemaError'

  constructor (readonly keyword: string, readonly path: string) {
    super(`the JSON schema uses ${JSON.stringify(keyword)} at ${path === '' ? 'its root' : path}, which llmesh cannot enforce while generating; leave it out`)
  }
}

// Keywords that constrain what the grammar generates, or only describe (title, description, ...).
const ENFORCED = new Set(['type', 'properties', 'required', 'additionalProperties', 'items', 'prefixItems', 'minItems', 'maxItems', 'minProperties', 'maxProperties', 'enum', 'const', 'anyOf', 'oneOf', '$ref', '$defs', 'definitions', 'minLength', 'maxLength', 'format'])
const DESCRIPTIVE = new Set(['title', 'description', 'default', 'examples', '$schema', '$id', '$comment', 'strict'])
const FORMATS = new Set(['date-time', 'date', 'time'])
// Keywords whose value is a map of subschemas, or a list of them.
const SCHEMA_MAPS = ['properties', '$defs', 'definitions']
const SCHEMA_LISTS = ['anyOf', 'oneOf', 'prefixItems']

/**
 * Checks that every keyword of `schema` is one the grammar enforces (or a mere description) and
 * returns it in the shape node-llama-cpp's converter takes: `anyOf` as `oneOf` (for generation an
 * alternative is an alternative), `definitions` as `$defs`. Throws UnsupportedSchemaError.
 */
function grammarSchema (schema: unknown, path = ''): unknown {
  if (typeof schema === 'boolean') {
    if (schema) return {}
    throw new UnsupportedSchemaError('false', path)
  }
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) throw new UnsupportedSchemaError(typeof schema, path)
  const result: Record<string, unknown> = {}
  for (const [keyword, value] of Object.entries(schema)) {
    const at = `${path}/${keyword}`
    if (DESCRIPTIVE.has(keyword)) continue
    if (!ENFORCED.has(keyword)) throw new UnsupportedSchemaError(keyword, path)
    if (keyword === 'format' && !FORMATS.has(String(value))) throw new UnsupportedSchemaError(`format ${String(value)}`, path)
    if (keyword === '$ref' && !/^#\/(\$defs|definitions)\/[^/]+$/.test(String(value))) throw new UnsupportedSchemaError(`$ref ${String(value)}`, path)
    if (SCHEMA_MAPS.includes(keyword)) {
      const map = Object.fromEntries(Object.entries(value as object).map(([name, sub]) => [name, grammarSchema(sub, `${at}/${name}`)]))
      result[keyword === 'definitions' ? '$defs' : keyword] = map
    } else if (SCHEMA_LISTS.includes(keyword)) {
      result[keyword === 'anyOf' ? 'oneOf' : keyword] = (value as unknown[]).map((sub, i) => grammarSchema(sub, `${at}/${i}`))
    } else if (keyword === 'items' || (keyword === 'additionalProperties' && typeof value === 'object')) {
      result[keyword] = grammarSchema(value, at)
    } else if (keyword === '$ref') {
      result[keyword] = String(value).replace('#/definitions/', '#/$defs/')
    } else {
      result[keyword] = value
    }
  }
  return result
}

// The end of node-llama-cpp's root rule: four newlines, then any more.
const TRAILING_NEWLINES = /^(root ::= .*?) "\\n\\n\\n\\n" \[\\n\]\*$/m

let llama: Promise<Llama> | undefined

// node-llama-cpp's converter lives on a Llama instance; one per process, made on first use, never a build.
async function sharedLlama (): Promise<Llama> {
  llama ??= getLlama({ ...NODE_LLAMA_OPTIONS, build: 'never' })
  return await llama
}

/**
 * The GBNF grammar that lets a model generate only JSON matching `schema` (node-llama-cpp's
 * JSON-schema converter), the same text for every engine, so that both constrain alike.
 * Throws UnsupportedSchemaError for a keyword it cannot enforce.
 */
export async function jsonSchemaGrammar (schema: unknown): Promise<string> {
  // Checked keyword by keyword above; the converter's type spells out every schema shape it takes.
  const checked = grammarSchema(schema) as Parameters<Llama['createGrammarForJsonSchema']>[0]
  const key = JSON.stringify(checked)
  const known = converted.get(key)
  if (known !== undefined) return known
  const { grammar } = await (await sharedLlama()).createGrammarForJsonSchema(checked)
  // node-llama-cpp's chat ends a JSON reply at four newlines, which its root rule demands after
  // the value; here the reply ends when the grammar is complete, at the value's last character.
  const text = grammar.replace(TRAILING_NEWLINES, '$1')
  // Clients send the same few schemas again and again; the oldest is forgotten first.
  if (converted.size >= CONVERTED_LIMIT) converted.delete(converted.keys().next().value as string)
  converted.set(key, text)
  return text
}

const CONVERTED_LIMIT = 64
const converted = new Map<string, string>()

/** The GBNF grammar of any JSON object (OpenAI's `json_object`). */
export async function jsonObjectGrammar (): Promise<string> {
  return await jsonSchemaGrammar({ type: 'object', additionalProperties: true })
}
