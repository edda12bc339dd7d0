import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { uniformValues } from './random-weights.js'

describe('random weights', () => {
  it('gives the same stream however the values are requested', () => {
    const whole = new Float32Array(1001)
    uniformValues(5, 'blk.0.attn_q.weight', 0.5)()(whole)
    const next = uniformValues(5, 'blk.0.attn_q.weight', 0.5)()
    const pieces = [3, 1, 1, 500, 496].map(length => {
      const piece = new Float32Array(length)
      next(piece)
      return [...piece]
    })
    assert.deepEqual(pieces.flat(), [...whole])
  })

  it('stays within the amplitude, spread over the whole range, and differs by seed and name', () => {
    const values = new Float32Array(10_000)
    uniformValues(5, 'a', 0.25)()(values)
    assert.ok(values.every(v => v >= -0.25 && v < 0.25))
    const mean = values.reduce((sum, v) => sum + v, 0) / values.length
    const variance = values.reduce((sum, v) => sum + (v - mean) ** 2, 0) / values.length
    assert.ok(Math.abs(mean) < 0.01 && Math.abs(variance - 0.25 ** 2 / 3) < 0.002, `mean ${mean}, variance ${variance}`)
    const other = (seed: number, name: string): Float32Array => {
      const out = new Float32Array(16)
      uniformValues(seed, name, 0.25)()(out)
      return out
    }
    assert.notDeepEqual(other(5, 'a'), other(6, 'a'))
    assert.notDeepEqual(other(5, 'a'), other(5, 'b'))
    assert.deepEqual(other(5, 'a'), values.subarray(0, 16))
  })
})
