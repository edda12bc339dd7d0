import { jsonObjectGrammar, jsonSchemaGrammar, UnsupportedSchemaError } from '../engine/json-grammar.js'
import { InvalidRequestError } from './errors.js'

/** OpenAI's `response_format` of a chat request. */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema', json_schema: { name: string, description?: string, schema?: unknown, strict?: boolean | null } }

/** Request schema of `response_format`. */
export const responseFormatSchema = {
  anyOf: [
    { type: 'null' },
    {
      type: 'object',
      properties: {
        type: { type: 'string', enum: ['text', 'json_object', 'json_schema'] },
        json_schema: {
          type: 'object',
          properties: {
            name: { type: 'string', minLength: 1, maxLength: 64 },
            description: { type: 'string' },
            schema: { anyOf: [{ type: 'object' }, { type: 'boolean' }] },
            strict: { type: ['boolean', 'null'] }
          },
          required: ['name']
        }
      },
      required: ['type']
    }
  ]
} as const

/**
 * The grammar that holds the reply to `format` (undefined for plain text): any JSON object, or
 * JSON that matches the schema. A schema keyword the grammar cannot enforce is a 400 naming it.
 */
export async function responseGrammar (format: ResponseFormat | null | undefined): Promise<string | undefined> {
  if (format == null || format.type === 'text') return undefined
  if (format.type === 'json_object') return await jsonObjectGrammar()
  if (format.json_schema === undefined) throw new InvalidRequestError('response_format of type json_schema needs json_schema: {name, schema}', 'response_format.json_schema')
  if (format.json_schema.schema === undefined) return await jsonObjectGrammar()
  try {
    return await jsonSchemaGrammar(format.json_schema.schema)
  } catch (err) {
    if (err instanceof UnsupportedSchemaError) throw new InvalidRequestError(err.message, 'response_format.json_schema.schema', 'unsupported_schema')
    throw err
  }
}
