import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { encodeF16, f16BitsToF32, f32ToF16Bits } from './f16.js'

describe('f16 conversion', () => {
  it('encodes well-known values exactly', () => {
    const cases: Array<[number, number]> = [
      [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [0.5, 0x3800], [65504, 0x7bff],
      [2 ** -14, 0x0400], [2 ** -24, 0x0001], [Infinity, 0x7c00], [-Infinity, 0xfc00],
      [65520, 0x7c00], // halfway between the largest half and infinity rounds to even: infinity
      [1e-10, 0x0000], [2 ** -25, 0x0000], [3 * 2 ** -25, 0x0002]
    ]
    for (const [value, bits] of cases) assert.equal(f32ToF16Bits(value), bits, `f16(${value})`)
    assert.ok(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN))))
  })

  it('rounds every value to the nearest half, ties to even', () => {
    const values = new Float32Array(20_000)
    for (let i = 0; i < values.length; i++) values[i] = (Math.random() - 0.5) * 2 ** (Math.random() * 40 - 26)
    // ties: halfway between 1 and the next half (1 + 2^-10) goes to the even one, 1
    values[0] = 1 + 2 ** -11
    values[1] = 1 + 3 * 2 ** -11
    const out = new Uint16Array(values.length)
    encodeF16(values, out)
    assert.equal(out[0], 0x3c00)
    assert.equal(out[1], 0x3c02)
    for (let i = 0; i < values.length; i++) {
      const x = values[i]
      const bits = out[i]
      const error = Math.abs(f16BitsToF32(bits) - x)
      for (const neighbour of [bits - 1, bits + 1]) {
        if ((neighbour & 0x7fff) > 0x7bff || (neighbour & 0x8000) !== (bits & 0x8000)) continue
        const other = Math.abs(f16BitsToF32(neighbour) - x)
        assert.ok(error < other || (error === other && (bits & 1) === 0), `f16(${x}) = ${bits.toString(16)} is not the nearest half`)
      }
    }
  })
})
