import { MessageSchemaError } from './errors.js'

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

/** Encodes a control message as a UTF-8 JSON payload. */
export function encodeJson (message: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(message))
}

/** Decodes a UTF-8 JSON payload into a plain object; throws MessageSchemaError otherwise. */
export function decodeJsonObject (payload: Uint8Array): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(decoder.decode(payload))
  } catch {
    throw new MessageSchemaError('message payload is not valid UTF-8 JSON')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new MessageSchemaError('message payload is not a JSON object')
  }
  return value as Record<string, unknown>
}

/** Reads a required string field of a decoded message. */
export function stringField (message: Record<string, unknown>, name: string, maxLength = 4096): string {
  const value = message[name]
  if (typeof value !== 'string' || value.length > maxLength) throw new MessageSchemaError(`field "${name}" must be a string of at most ${maxLength} characters`)
  return value
}

/** Reads a required whole-number field of a decoded message. */
export function intField (message: Record<string, unknown>, name: string): number {
  const value = message[name]
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new MessageSchemaError(`field "${name}" must be a non-negative whole number`)
  return value
}
