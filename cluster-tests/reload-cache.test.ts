// Loading a plan again must not send a worker the weights it already holds: the tunnel's tensor
// cache supplies them all, and answers llama.cpp's hash requests for those above its threshold
// itself (rpc-server runs without a cache of its own). Real libp2p nodes, a real rpc-server and
// real llama-servers on 127.0.0.1.
import '../node/polyfill.js'
import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startLlamaServer } from '../engine/llama-server.js'
import { loadLocalEngine } from '../engine/local-engine.js'
import { readModelFacts } from '../engine/model-facts.js'
import { startRpcServer, type RpcServer } from '../engine/rpc-server.js'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { LLAMA_RPC_HASH_THRESHOLD_BYTES } from '../protocols/rpc-tunnel/ggml-rpc.js'
import { messageCapFor } from '../protocols/rpc-tunnel/index.js'
import { largestStageTensorBytes, planStages, renderLlamaServerArgs, type StagePlan } from '../scheduler/index.js'
import { startTunnelNode, type TunnelNode } from '../tools/tunnel-node.js'
import { metricSample } from '../tools/metric-sample.js'

const PROMPT = 'The quick brown fox jumps over the lazy dog.'
const GiB = 1024 ** 3

/** What the worker's bridge counted so far: tensor data that crossed the tunnel, and what its cache supplied. */
interface Received { setTensorBytes: number, setTensorHashRequests: number, cacheHitBytes: number }

describe('reloading a plan', { timeout: 300_000 }, () => {
  let model: TestModel
  let dataDir: string
  let rpcServer: RpcServer
  let coordinator: TunnelNode
  let worker: TunnelNode
  let plan: StagePlan
  let maxMessageBytes: number
  let bannedTokens: number[]

  before(async () => {
    // 2048 wide: the feed-forward tensors (2048 x 2816 f16, 11 MiB) are above llama.cpp's hash
    // threshold, the attention tensors (2 and 8 MiB) below it.
    model = await writeTestModel({ layers: 2, embd: 2048, ff: 2816, heads: 16, kvHeads: 4, type: 'f16' })
    dataDir = await mkdtemp(join(tmpdir(), 'llmesh-reload-cache-test-'))
    const local = await loadLocalEngine({ modelPath: model.path })
    bannedTokens = local.partialCharacterTokens()
    await local.dispose()
    const facts = await readModelFacts(model.path)
    assert.ok(facts.largestTensorBytes > LLAMA_RPC_HASH_THRESHOLD_BYTES, 'the model has a tensor llama.cpp asks rpc-server for by hash')
    plan = planStages({ model: facts, coordinator: { id: 'coordinator', offeredBytes: GiB, speed: 1 }, workers: [{ id: 'worker', offeredBytes: GiB, speed: 1 }], contextSize: 512 })
    assert.ok(plan.stages[1].layerCount > 0, 'the plan gives the worker layers')
    maxMessageBytes = messageCapFor(largestStageTensorBytes(facts, plan, plan.stages[1]))
    rpcServer = await startRpcServer({ dataDir, threads: 1 })
    coordinator = await startTunnelNode()
    worker = await startTunnelNode({
      bridge: {
        authorize: peer => peer.equals(coordinator.peerId),
        rpcServerPort: () => rpcServer.port,
        messageCapCeiling: () => messageCapFor(GiB),
        tensorCache: { dir: join(dataDir, 'tensor-cache'), maxBytes: () => GiB }
      }
    })
    await coordinator.dial(worker.getMultiaddrs()[0])
  })

  after(async () => {
    await Promise.all([coordinator?.stop(), worker?.stop()])
    await rpcServer?.dispose()
    await model?.remove()
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
  })

  async function received (): Promise<Received> {
    const text = await worker.services.rpcTunnel.registry.metrics()
    return {
      setTensorBytes: metricSample(text, 'llmesh_rpc_request_bytes_total{command="set_tensor"}'),
      setTensorHashRequests: metricSample(text, 'llmesh_rpc_command_duration_seconds_count{command="set_tensor_hash"}'),
      cacheHitBytes: metricSample(text, 'llmesh_rpc_tensor_cache_bytes_total{event="hit"}')
    }
  }

  /** One engine start as the coordinator makes it: the cap exchange, then llama-server through the tunnel. */
  async function load (): Promise<{ tokens: number[], received: Received }> {
    const before = await received()
    const endpoint = await coordinator.services.rpcTunnel.openListener(worker.peerId, { maxMessageBytes })
    const server = await startLlamaServer({ modelPath: model.path, threads: 1, extraArgs: renderLlamaServerArgs(plan, { worker: endpoint }) })
    const tokens: number[] = []
    try {
      for await (const piece of server.generate(PROMPT, { maxTokens: 8, ignoreEos: true, bannedTokens })) tokens.push(piece.token)
    } finally {
      await server.dispose()
      await coordinator.services.rpcTunnel.closeListeners()
    }
    const after = await received()
    return {
      tokens,
      received: {
        setTensorBytes: after.setTensorBytes - before.setTensorBytes,
        setTensorHashRequests: after.setTensorHashRequests - before.setTensorHashRequests,
        cacheHitBytes: after.cacheHitBytes - before.cacheHitBytes
      }
    }
  }

  it('sends the worker none of the weights it already holds, and computes the same tokens', async () => {
    const first = await load()
    assert.ok(first.received.setTensorBytes > 4 * LLAMA_RPC_HASH_THRESHOLD_BYTES, `the first load sends the weights: ${JSON.stringify(first.received)}`)
    assert.ok(first.received.setTensorHashRequests > 0, 'llama.cpp asked rpc-server for the large tensors by hash')
    assert.deepEqual(await readdir(dataDir), ['tensor-cache'], 'only the tunnel\'s tensor cache keeps anything on the worker')

    const second = await load()
    assert.deepEqual(second.tokens, first.tokens)
    assert.ok(second.received.setTensorHashRequests > 0)
    // Every weight came from the tunnel's cache, those above the hash threshold included.
    assert.ok(second.received.cacheHitBytes > 0.9 * first.received.setTensorBytes, `the tensor cache supplied the weights: ${JSON.stringify({ first: first.received, second: second.received })}`)
    // What still crosses whole: the generation's inputs (hidden states, masks) and the tensors
    // too small to be worth a file (norms), about 1% of the first load here.
    assert.ok(second.received.setTensorBytes < first.received.setTensorBytes / 20, `the reload sent ${second.received.setTensorBytes} bytes of tensor data, the first load ${first.received.setTensorBytes}`)
  })
})
