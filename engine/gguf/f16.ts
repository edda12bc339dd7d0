// Node 20 has no Float16Array, so half floats are built from the float32 bit pattern.
const f32 = new Float32Array(1)
const f32Bits = new Uint32Array(f32.buffer)

/** IEEE half-precision bits of a number, rounded to nearest even like ggml's FP32_TO_FP16. */
export function f32ToF16Bits (value: number): number {
  f32[0] = value
  return halfFromSingleBits(f32Bits[0])
}

/** Writes `values` as half floats into `out` (host byte order: little-endian on every platform llama.cpp runs on). */
export function encodeF16 (values: Float32Array, out: Uint16Array): void {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length)
  for (let i = 0; i < bits.length; i++) out[i] = halfFromSingleBits(bits[i])
}

// Fabian Giesen's float_to_half_fast3_rtne: round to nearest even with integer arithmetic.
function halfFromSingleBits (bits: number): number {
  const sign = (bits >>> 16) & 0x8000
  const abs = bits & 0x7fffffff
  // At or above 65536 (and inf/NaN): infinity, or a quiet NaN.
  if (abs >= 0x47800000) return sign | (abs > 0x7f800000 ? 0x7e00 : 0x7c00)
  // Below the smallest normal half: adding 0.5 makes the float unit round the mantissa into place.
  if (abs < 0x38800000) {
    f32Bits[0] = abs
    f32[0] = f32[0] + 0.5
    return sign | (f32Bits[0] - 0x3f000000)
  }
  // Rebias the exponent (-112 << 23), add just under half an ulp plus the lowest kept bit (ties to even), shift.
  return sign | ((abs + 0xc8000fff + ((abs >>> 13) & 1)) >>> 13)
}

/** The number that half-precision bits stand for. */
export function f16BitsToF32 (bits: number): number {
  const sign = (bits & 0x8000) !== 0 ? -1 : 1
  const exponent = (bits >>> 10) & 0x1f
  const mantissa = bits & 0x3ff
  if (exponent === 0) return sign * mantissa * 2 ** -24
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15)
}
