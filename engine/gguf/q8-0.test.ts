import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { f16BitsToF32 } from './f16.js'
import { encodeQ8_0, Q8_0_BLOCK_BYTES, Q8_0_BLOCK_SIZE } from './q8-0.js'

function dequantize (bytes: ArrayBuffer, blocks: number): number[] {
  const view = new DataView(bytes)
  const values: number[] = []
  for (let b = 0; b < blocks; b++) {
    const scale = f16BitsToF32(view.getUint16(b * Q8_0_BLOCK_BYTES, true))
    for (let i = 0; i < Q8_0_BLOCK_SIZE; i++) values.push(scale * view.getInt8(b * Q8_0_BLOCK_BYTES + 2 + i))
  }
  return values
}

describe('q8_0 quantisation', () => {
  it('stores a half-float scale and 32 signed bytes per block, within half a step of each value', () => {
    const values = new Float32Array(4 * Q8_0_BLOCK_SIZE)
    for (let i = 0; i < values.length; i++) values[i] = Math.sin(i * 0.7) * (1 + (i >> 5))
    const out = new ArrayBuffer(4 * Q8_0_BLOCK_BYTES)
    encodeQ8_0(values, out)
    const view = new DataView(out)
    const restored = dequantize(out, 4)
    for (let b = 0; b < 4; b++) {
      const block = values.subarray(b * Q8_0_BLOCK_SIZE, (b + 1) * Q8_0_BLOCK_SIZE)
      const amax = Math.max(...block.map(Math.abs))
      const scale = f16BitsToF32(view.getUint16(b * Q8_0_BLOCK_BYTES, true))
      assert.ok(Math.abs(scale - amax / 127) <= (amax / 127) * 2 ** -10, 'scale is max|x| / 127 in f16')
      const quants = new Int8Array(out, b * Q8_0_BLOCK_BYTES + 2, Q8_0_BLOCK_SIZE)
      assert.equal(Math.max(...quants.map(Math.abs)), 127, 'the largest value uses the full range')
      for (let i = 0; i < Q8_0_BLOCK_SIZE; i++) {
        assert.ok(Math.abs(restored[b * Q8_0_BLOCK_SIZE + i] - block[i]) <= scale * 0.51 + amax * 2 ** -10)
      }
    }
  })

  it('writes an all-zero block as zeros and refuses a partial block', () => {
    const out = new ArrayBuffer(Q8_0_BLOCK_BYTES)
    new Uint8Array(out).fill(0xff)
    encodeQ8_0(new Float32Array(Q8_0_BLOCK_SIZE), out)
    assert.deepEqual([...new Uint8Array(out)], new Array(Q8_0_BLOCK_BYTES).fill(0))
    assert.throws(() => encodeQ8_0(new Float32Array(31), out), RangeError)
  })
})
