import { f32ToF16Bits } from './f16.js'

/** Values per q8_0 block. */
export const Q8_0_BLOCK_SIZE = 32

/** Bytes per q8_0 block: a half-float scale and 32 signed bytes. */
export const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK_SIZE

/**
 * Quantises `values` (a multiple of 32 of them) to q8_0 blocks at the start of `out`
 * (host byte order, little-endian), following ggml's quantize_row_q8_0_ref:
 * scale = max|x| / 127, each value divided by it and rounded half away from zero.
 */
export function encodeQ8_0 (values: Float32Array, out: ArrayBuffer): void {
  if (values.length % Q8_0_BLOCK_SIZE !== 0) throw new RangeError(`q8_0 needs a multiple of ${Q8_0_BLOCK_SIZE} values, got ${values.length}`)
  const scales = new Uint16Array(out)
  const quants = new Int8Array(out)
  for (let block = 0; block < values.length / Q8_0_BLOCK_SIZE; block++) {
    const first = block * Q8_0_BLOCK_SIZE
    let amax = 0
    for (let i = first; i < first + Q8_0_BLOCK_SIZE; i++) amax = Math.max(amax, Math.abs(values[i]))
    // ggml computes in float32; Math.fround keeps every step identical to its arithmetic.
    const scale = Math.fround(amax / 127)
    const inverse = scale !== 0 ? Math.fround(1 / scale) : 0
    scales[block * (Q8_0_BLOCK_BYTES / 2)] = f32ToF16Bits(scale)
    const at = block * Q8_0_BLOCK_BYTES + 2 - first
    for (let i = first; i < first + Q8_0_BLOCK_SIZE; i++) {
      const scaled = Math.fround(values[i] * inverse)
      quants[at + i] = scaled < 0 ? -Math.round(-scaled) : Math.round(scaled)
    }
  }
}
