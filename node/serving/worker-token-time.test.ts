import assert from 'node:assert/strict'
import { performance } from 'node:perf_hooks'
import { setTimeout as delay } from 'node:timers/promises'
import { describe, it } from 'node:test'
import { Registry } from 'prom-client'
import { FIXED_REQUEST_BYTES, RpcCommand } from '../../protocols/rpc-tunnel/ggml-rpc.js'
import { rpcRequest, rpcResponse } from '../../protocols/rpc-tunnel/test-support/frames.js'
import { WorkerTokenTimes } from './worker-token-time.js'

/**
 * Waits at least `ms` by the clock the timings use: a timer may fire up to a millisecond early by
 * performance.now() (libuv counts whole milliseconds from a cached loop time).
 */
async function waitAtLeast (ms: number): Promise<void> {
  const start = performance.now()
  while (performance.now() - start < ms) await delay(Math.max(1, Math.ceil(ms - (performance.now() - start))))
}

describe('worker time per token, seen from the coordinator', () => {
  it('attributes the wait for a worker\'s answers to its tokens and splits it with the network round trip', async () => {
    const registry = new Registry()
    const times = new WorkerTokenTimes(registry, () => 5)
    const session = times.session('worker-a')
    session.request(rpcRequest(RpcCommand.HELLO, FIXED_REQUEST_BYTES.get(RpcCommand.HELLO) ?? 0))
    // An answer with next to no work: its time bounds the network round trip from above.
    await waitAtLeast(3)
    session.response(rpcResponse(3))
    assert.equal(times.tokenTime('worker-a', 5), null)
    for (let token = 0; token < 4; token++) {
      // The token's input, the one-way GRAPH_COMPUTE, then llama-server waits for the result.
      session.request(rpcRequest(RpcCommand.SET_TENSOR, 64))
      session.request(rpcRequest(RpcCommand.GRAPH_COMPUTE, 128))
      // Split across chunks, as TCP delivers it.
      const get = rpcRequest(RpcCommand.GET_TENSOR, FIXED_REQUEST_BYTES.get(RpcCommand.GET_TENSOR) ?? 0)
      session.request(get.subarray(0, 5))
      session.request(get.subarray(5))
      await waitAtLeast(30)
      const answer = rpcResponse(1024)
      session.response(answer.subarray(0, 100))
      session.response(answer.subarray(100))
    }
    session.request(rpcRequest(RpcCommand.GRAPH_COMPUTE, 128))
    const time = times.tokenTime('worker-a', 5)
    assert.ok(time !== null)
    // One answer per token, each a round trip: the smaller of the ping RTT (5 ms) and the fastest answer (HELLO's, 3 ms or a little more).
    assert.ok(time.transferMs >= 3 && time.transferMs <= 5, `transfer ${time.transferMs} ms`)
    assert.ok(time.computeMs + time.transferMs >= 30 && time.computeMs < 500, `compute ${time.computeMs} ms`)
    assert.equal(times.tokenTime('worker-b', 5), null)

    const text = await registry.metrics()
    const sent = 9 + 24 + 5 * (9 + 128) + 4 * (9 + 64 + 9 + 312)
    assert.match(text, new RegExp(`llmesh_tunnel_bytes_total\\{worker="worker-a",direction="sent"\\} ${sent}\\n`))
    assert.match(text, new RegExp(`llmesh_tunnel_bytes_total\\{worker="worker-a",direction="received"\\} ${8 + 3 + 4 * (8 + 1024)}\\n`))
    assert.match(text, /llmesh_tunnel_commands_total\{worker="worker-a",command="get_tensor"\} 4\n/)
    assert.match(text, new RegExp(`llmesh_tunnel_token_seconds\\{worker="worker-a",part="transfer"\\} ${time.transferMs / 1000}\n`))
  })

  it('counts the commands of a natively relayed session as it counts bytes', async () => {
    const registry = new Registry()
    const times = new WorkerTokenTimes(registry, () => 5)
    const session = times.session('worker-a')
    const relayed = session.relayed
    assert.ok(relayed !== undefined, 'the observer takes relayed commands, so the coordinator may relay its sessions')
    // Before the relay, HELLO and its answer cross as bytes.
    session.request(rpcRequest(RpcCommand.HELLO, FIXED_REQUEST_BYTES.get(RpcCommand.HELLO) ?? 0))
    session.response(rpcResponse(3))
    // Seconds of the relay's clock: each token's answer comes 30 ms after its request ended.
    const step = (command: number, requestBytes: number, responseBytes: number, startedS: number, waitS = 0): void => {
      relayed({ command, requestBytes, responseBytes, startedS, requestEndedS: startedS + 0.001, endedS: startedS + 0.001 + waitS })
    }
    for (let token = 0; token < 4; token++) {
      step(RpcCommand.SET_TENSOR, 64, 0, 100 + token)
      step(RpcCommand.GRAPH_COMPUTE, 128, 0, 100.002 + token)
      step(RpcCommand.GET_TENSOR, 312, 1024, 100.004 + token, 0.03)
    }
    step(RpcCommand.GRAPH_COMPUTE, 128, 0, 105)
    const time = times.tokenTime('worker-a', 5)
    assert.ok(time !== null)
    // HELLO's answer came at once: the fastest answer bounds the round trip, the rest of the 30 ms is compute.
    assert.ok(Math.abs(time.computeMs + time.transferMs - 30) < 0.01 && time.transferMs < 5, `compute ${time.computeMs} ms, transfer ${time.transferMs} ms`)

    const text = await registry.metrics()
    const sent = 9 + 24 + 5 * (9 + 128) + 4 * (9 + 64 + 9 + 312)
    assert.match(text, new RegExp(`llmesh_tunnel_bytes_total\\{worker="worker-a",direction="sent"\\} ${sent}\\n`))
    assert.match(text, new RegExp(`llmesh_tunnel_bytes_total\\{worker="worker-a",direction="received"\\} ${8 + 3 + 4 * (8 + 1024)}\\n`))
    assert.match(text, /llmesh_tunnel_commands_total\{worker="worker-a",command="get_tensor"\} 4\n/)
    const waited = Number(/llmesh_tunnel_command_seconds_total\{worker="worker-a",command="get_tensor"\} ([\d.e-]+)\n/.exec(text)?.[1])
    assert.ok(Math.abs(waited - 4 * 0.03) < 1e-9, `get_tensor took ${waited} s in all`)
  })

  it('bytes it cannot parse stop the timing, never the session', () => {
    const times = new WorkerTokenTimes(new Registry(), () => null)
    const session = times.session('worker-a')
    // Not HELLO first: the parser refuses, the observer must not throw.
    session.request(rpcRequest(RpcCommand.GRAPH_COMPUTE, 8))
    session.request(rpcRequest(RpcCommand.GRAPH_COMPUTE, 8))
    assert.equal(times.tokenTime('worker-a', null), null)
  })
})
