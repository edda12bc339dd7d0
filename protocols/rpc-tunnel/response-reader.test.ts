import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { RpcResponseReader } from './response-reader.js'

function response (payloadBytes: number): Uint8Array {
  const bytes = new Uint8Array(8 + payloadBytes).fill(7)
  new DataView(bytes.buffer).setBigUint64(0, BigInt(payloadBytes), true)
  return bytes
}

describe('ggml-rpc response reader', () => {
  const stream = new Uint8Array(Buffer.concat([response(28), response(0), response(4), response(5000)]))

  it('finds the end of every response, however the stream is split', () => {
    for (const size of [1, 3, 8, 9, 36, 100, stream.length]) {
      const ends: number[] = []
      const reader = new RpcResponseReader(bytes => ends.push(bytes))
      for (let i = 0; i < stream.length; i += size) reader.push(stream.subarray(i, i + size))
      assert.deepEqual(ends, [28, 0, 4, 5000], `chunks of ${size}`)
    }
  })

  it('reports nothing for a response that is still arriving', () => {
    const ends: number[] = []
    const reader = new RpcResponseReader(bytes => ends.push(bytes))
    reader.push(response(10).subarray(0, 17))
    assert.deepEqual(ends, [])
  })
})
