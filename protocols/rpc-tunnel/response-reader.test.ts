import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { RpcResponseReader } from './response-reader.js'
import { rpcResponse } from './test-support/frames.js'


describe('ggml-rpc response reader', () => {
  const stream = new Uint8Array(Buffer.concat([rpcResponse(28, 7), rpcResponse(0, 7), rpcResponse(4, 7), rpcResponse(5000, 7)]))

  it('finds the end of every response, however the stream is split', () => {
    for (const size of [1, 3, 8, 9, 36, 100, stream.length]) {
      const ends: number[] = []
      const reader = new RpcResponseReader(bytes => ends.push(bytes))
      for (let i = 0; i < stream.length; i += size) reader.push(stream.subarray(i, i + size))
      assert.deepEqual(ends, [28, 0, 4, 5000], `chunks of ${size}`)
    }
  })

  it('reports nothing for a response that is still arriving, and says it is mid-message', () => {
    const ends: number[] = []
    const reader = new RpcResponseReader(bytes => ends.push(bytes))
    assert.equal(reader.midMessage, false)
    reader.push(rpcResponse(10, 7).subarray(0, 3))
    assert.equal(reader.midMessage, true, 'part of the size header')
    reader.push(rpcResponse(10, 7).subarray(3, 17))
    assert.deepEqual(ends, [])
    assert.equal(reader.midMessage, true, 'part of the payload')
    reader.push(rpcResponse(10, 7).subarray(17))
    assert.deepEqual(ends, [10])
    assert.equal(reader.midMessage, false)
  })
})
