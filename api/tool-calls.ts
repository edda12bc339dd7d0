import { randomUUID } from 'node:crypto'
import type { ChatTool } from '../engine/chat-template.js'
import { jsonSchemaGrammar } from '../engine/json-grammar.js'

/**
 * How a model writes tool calls, told by its chat template: Hermes and Qwen wrap JSON in
 * `<tool_call>` tags, Mistral puts a JSON list after `[TOOL_CALLS]`, Llama 3.x writes a JSON
 * object (after `<|python_tag|>` or alone); other models get the same bare JSON (generic).
 */
export type ToolCallFormat = 'hermes' | 'mistral' | 'llama3' | 'generic'

/** One call the model made, as OpenAI's `message.tool_calls` carries it: arguments as a JSON string. */
export interface ToolCall {
  id: string
  type: 'function'
  function: { name: string, arguments: string }
}

/** The format the model's chat template renders tool calls in. */
export function toolCallFormat (templateSource: string): ToolCallFormat {
  if (templateSource.includes('<tool_call>')) return 'hermes'
  if (templateSource.includes('[TOOL_CALLS]')) return 'mistral'
  if (templateSource.includes('<|python_tag|>') || templateSource.includes('ipython')) return 'llama3'
  return 'generic'
}

// Where a call begins in each format; the generic and Llama formats begin with their JSON.
const MARKERS: Record<ToolCallFormat, string> = { hermes: '<tool_call>', mistral: '[TOOL_CALLS]', llama3: '<|python_tag|>', generic: '' }

/** One call's JSON, in any of the formats' spellings of the arguments (`arguments` or Llama's `parameters`). */
function callOf (value: unknown): ToolCall['function'] | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined
  const { name, arguments: args, parameters } = value as { name?: unknown, arguments?: unknown, parameters?: unknown }
  const given = args ?? parameters ?? {}
  if (typeof name !== 'string' || name === '' || given === null || typeof given !== 'object') return undefined
  return { name, arguments: JSON.stringify(given) }
}

function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/**
 * The calls in a reply and the text around them, or undefined when the reply holds no well-formed
 * call (it is then plain content). Every call gets an id of its own.
 */
export function parseToolCalls (text: string, format: ToolCallFormat): { content: string, calls: ToolCall[] } | undefined {
  const values: unknown[] = []
  let content = text
  if (format === 'hermes') {
    content = text.replace(/<tool_call>\s*([\s\S]*?)\s*<\/tool_call>/g, (_, json: string) => {
      values.push(parseJson(json))
      return ''
    })
  } else {
    // Llama 3.x writes its python tag only for some calls.
    const marker = format === 'llama3' && !text.includes(MARKERS.llama3) ? '' : MARKERS[format]
    const start = marker === '' ? text.search(/[[{]/) : text.indexOf(marker)
    if (start < 0 || (marker === '' && text.slice(0, start).trim() !== '')) return undefined
    const json = parseJson(text.slice(start + marker.length).trim())
    values.push(...(Array.isArray(json) ? json : [json]))
    content = text.slice(0, start)
  }
  const calls: ToolCall[] = []
  for (const value of values) {
    const call = callOf(value)
    if (call === undefined) return undefined
    calls.push({ id: `call_${randomUUID().replaceAll('-', '').slice(0, 24)}`, type: 'function', function: call })
  }
  return calls.length === 0 ? undefined : { content: content.trim(), calls }
}

/**
 * The grammar of a reply that is one call of one of `tools`, written in `format`, for
 * tool_choice `required` or a named function: even a model with random weights then answers
 * with a well-formed call whose arguments match the function's parameters.
 */
export async function toolCallGrammar (tools: readonly ChatTool[], format: ToolCallFormat): Promise<string> {
  const calls = tools.map(tool => ({
    type: 'object',
    properties: { name: { const: tool.function.name }, arguments: tool.function.parameters ?? { type: 'object' } },
    required: ['name', 'arguments'],
    additionalProperties: false
  }))
  const json = await jsonSchemaGrammar(calls.length === 1 ? calls[0] : { oneOf: calls })
  const wrapped = { hermes: '"<tool_call>\\n" call "\\n</tool_call>"', mistral: '"[TOOL_CALLS][" call "]"', llama3: 'call', generic: 'call' }[format]
  return `root ::= ${wrapped}\n${json.replace(/^root ::=/m, 'call ::=')}`
}

/**
 * Splits a streamed reply into content, passed on as it comes, and tool calls, held from where a
 * call may begin until the reply ends. Text that only might begin a call is held until it is told apart.
 */
export class ToolCallStream {
  readonly #marker: string
  #text = ''
  #sent = 0
  #holding = false

  constructor (private readonly format: ToolCallFormat) {
    this.#marker = MARKERS[format]
  }

  /** Adds reply text; returns the content that can be passed on now. */
  push (text: string): string {
    this.#text += text
    if (this.#holding) return ''
    const start = this.#callStart()
    if (start >= 0) {
      this.#holding = true
      return this.#release(start)
    }
    return this.#release(this.#text.length - this.#undecided())
  }

  // Where a call begins: its marker, or (bare JSON formats) a reply that starts with { or [.
  #callStart (): number {
    const at = this.#marker === '' ? -1 : this.#text.indexOf(this.#marker)
    if (at >= 0) return at
    if (this.format !== 'generic' && this.format !== 'llama3') return -1
    const first = this.#text.search(/\S/)
    return first >= 0 && first >= this.#sent && /[[{]/.test(this.#text[first]) ? first : -1
  }

  // The length of the tail that may still begin a call: a start of the marker, or leading space.
  #undecided (): number {
    if ((this.format === 'generic' || this.format === 'llama3') && this.#text.trim() === '') return this.#text.length - this.#sent
    for (let n = Math.min(this.#marker.length - 1, this.#text.length); n > 0; n--) if (this.#text.endsWith(this.#marker.slice(0, n))) return n
    return 0
  }

  /** At the reply's end: the calls it made (none when it made no well-formed one) and the content still held. */
  end (): { content: string, calls: ToolCall[] } {
    const rest = this.#text.slice(this.#sent)
    const parsed = this.#holding ? parseToolCalls(rest, this.format) : undefined
    return parsed === undefined ? { content: rest, calls: [] } : parsed
  }

  #release (end: number): string {
    const text = this.#text.slice(this.#sent, Math.max(this.#sent, end))
    this.#sent = Math.max(this.#sent, end)
    return text
  }
}
