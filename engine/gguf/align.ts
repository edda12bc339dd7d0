import { GGUF_DEFAULT_ALIGNMENT, GGUF_KEY_ALIGNMENT, GgufValueType } from './constants.js'
import { InvalidGgufError } from './errors.js'
import type { GgufValue } from './values.js'

/** Rounds `value` up to the next multiple of `alignment`. */
export function alignUp (value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment
}

/** The tensor data alignment that metadata asks for (`general.alignment`, default 32); `source` names the metadata in errors. */
export function dataAlignment (metadata: ReadonlyMap<string, GgufValue>, source: string): number {
  const entry = metadata.get(GGUF_KEY_ALIGNMENT)
  if (entry == null) return GGUF_DEFAULT_ALIGNMENT
  if (entry.type !== GgufValueType.UINT32 || entry.value === 0 || (entry.value & (entry.value - 1)) !== 0) {
    throw new InvalidGgufError(`${source}: ${GGUF_KEY_ALIGNMENT} must be a uint32 power of two`)
  }
  return entry.value
}
