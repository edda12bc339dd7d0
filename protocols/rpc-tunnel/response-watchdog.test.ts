import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { RpcCommand } from './ggml-rpc.js'
import { ResponseWatchdog } from './response-watchdog.js'
import { rpcRequest, rpcResponse } from './test-support/frames.js'

const TIMEOUT_MS = 100

/** A watchdog that records when it fired. */
function watch (): { dog: ResponseWatchdog, stalls: () => number } {
  let stalls = 0
  const dog = new ResponseWatchdog(TIMEOUT_MS, () => { stalls++ })
  return { dog, stalls: () => stalls }
}

describe('tunnel response watchdog', () => {
  it('fires once when a request that needs an answer gets none', async () => {
    const { dog, stalls } = watch()
    dog.request(rpcRequest(RpcCommand.HELLO, 24))
    await delay(TIMEOUT_MS * 3)
    assert.equal(stalls(), 1)
    dog.stop()
  })

  it('stays quiet while the worker answers, and while the session is idle between commands', async () => {
    const { dog, stalls } = watch()
    dog.request(rpcRequest(RpcCommand.HELLO, 24))
    dog.response(rpcResponse(3))
    // A one-way command (GRAPH_COMPUTE) leaves nothing to wait for.
    dog.request(rpcRequest(RpcCommand.GRAPH_COMPUTE, 64))
    await delay(TIMEOUT_MS * 3)
    assert.equal(stalls(), 0)
    dog.stop()
  })

  it('counts a slow answer that keeps arriving as progress, not as a stall', async () => {
    const { dog, stalls } = watch()
    dog.request(rpcRequest(RpcCommand.HELLO, 24))
    dog.response(rpcResponse(3))
    dog.request(rpcRequest(RpcCommand.GET_TENSOR, 312))
    const answer = rpcResponse(40)
    for (let i = 0; i < answer.length; i += 8) {
      await delay(TIMEOUT_MS / 2)
      dog.response(answer.subarray(i, i + 8))
    }
    await delay(TIMEOUT_MS * 2)
    assert.equal(stalls(), 0)
    dog.stop()
  })

  it('fires when a request stays part-way sent (the worker stopped draining the stream)', async () => {
    const { dog, stalls } = watch()
    dog.request(rpcRequest(RpcCommand.HELLO, 24))
    dog.response(rpcResponse(3))
    dog.request(rpcRequest(RpcCommand.SET_TENSOR, 1000).subarray(0, 500))
    await delay(TIMEOUT_MS * 3)
    assert.equal(stalls(), 1)
  })

  it('tells when the last whole request has the worker compute its graph', () => {
    const { dog } = watch()
    dog.request(rpcRequest(RpcCommand.HELLO, 24))
    dog.response(rpcResponse(3))
    dog.request(rpcRequest(RpcCommand.SET_TENSOR, 1000))
    assert.equal(dog.lastRequestComputes, false)
    const recompute = rpcRequest(RpcCommand.GRAPH_RECOMPUTE, 4)
    dog.request(recompute.subarray(0, 5))
    assert.equal(dog.lastRequestComputes, false, 'not before the request is whole')
    dog.request(recompute.subarray(5))
    assert.equal(dog.lastRequestComputes, true)
    dog.request(rpcRequest(RpcCommand.GET_TENSOR, 312))
    assert.equal(dog.lastRequestComputes, false)
    dog.response(rpcResponse(40))
    dog.request(rpcRequest(RpcCommand.GRAPH_COMPUTE, 64))
    assert.equal(dog.lastRequestComputes, true)
    dog.stop()
  })

  it('never fires after stop', async () => {
    const { dog, stalls } = watch()
    dog.request(rpcRequest(RpcCommand.HELLO, 24))
    dog.stop()
    await delay(TIMEOUT_MS * 2)
    assert.equal(stalls(), 0)
  })
})
