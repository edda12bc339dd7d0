// Nothing of a prompt at rest on any node: with a model whose hidden states exceed 10 MiB per
// micro-batch (above llama.cpp's RPC hash threshold, where rpc-server's own --cache would save
// every one), long prompts leave no new or grown file in the worker's data dir, the cache or the
// temp dir, and no file there holds any of the activations the coordinator sent. The children
// run with core dumps off. Real libp2p nodes, a real rpc-server and llama-server on 127.0.0.1.
import '../node/polyfill.js'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { findLlamaCppTools } from '../engine/llama-cpp/tools.js'
import { startLlamaServer } from '../engine/llama-server.js'
import { readModelFacts } from '../engine/model-facts.js'
import { startRpcServer, type RpcServer } from '../engine/rpc-server.js'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { LLAMA_RPC_HASH_THRESHOLD_BYTES, RpcCommand, SET_TENSOR_DATA_OFFSET } from '../protocols/rpc-tunnel/ggml-rpc.js'
import { messageCapFor, type TunnelTraffic } from '../protocols/rpc-tunnel/index.js'
import { RpcRequestValidator } from '../protocols/rpc-tunnel/request-validator.js'
import { largestStageTensorBytes, planStages, renderLlamaServerArgs } from '../scheduler/index.js'
import { startTunnelNode, type TunnelNode } from '../tools/tunnel-node.js'

const GiB = 1024 ** 3
const PROMPTS = 3
/** bytes taken from the middle of each hidden-state batch, to look for in files */
const SAMPLE_BYTES = 64

/** Size and modification time of every file under some folders. */
type Snapshot = Map<string, { size: number, mtimeMs: number }>

async function snapshot (roots: readonly string[]): Promise<Snapshot> {
  const files: Snapshot = new Map()
  for (const root of roots) {
    for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile()) continue
      const path = join(entry.parentPath, entry.name)
      const info = await stat(path).catch(() => undefined)
      if (info !== undefined) files.set(path, { size: info.size, mtimeMs: info.mtimeMs })
    }
  }
  return files
}

/** Waits until no file under `roots` changes for a second (the tensor cache writes in the background). */
async function settled (roots: readonly string[]): Promise<Snapshot> {
  let last = await snapshot(roots)
  for (let waited = 0; waited < 120_000; waited += 1000) {
    await sleep(1000)
    const next = await snapshot(roots)
    if (JSON.stringify([...next]) === JSON.stringify([...last])) return next
    last = next
  }
  throw new Error(`files under ${roots.join(', ')} kept changing for two minutes`)
}

/** Text of random lowercase words, different for each seed: no prompt shares a prefix with another. */
function promptText (seed: number, words: number): string {
  let state = seed * 2654435761 >>> 0
  const next = (): number => { state = (Math.imul(state, 1664525) + 1013904223) >>> 0; return state }
  return Array.from({ length: words }, () => Array.from({ length: 2 + next() % 7 }, () => String.fromCharCode(97 + next() % 26)).join('')).join(' ')
}

/**
 * Follows llama-server's requests to the worker and keeps a sample of every hidden-state batch it
 * sends after the first graph computation, where the batch is larger than llama.cpp's hash threshold.
 */
class ActivationSamples {
  readonly samples: Buffer[] = []

  session (): TunnelTraffic {
    let computed = false
    let parts: Uint8Array[] | undefined
    const framer = new RpcRequestValidator(Number.MAX_SAFE_INTEGER, {
      requestStart: (command, payloadBytes) => {
        if (command === RpcCommand.GRAPH_COMPUTE) computed = true
        parts = computed && command === RpcCommand.SET_TENSOR && payloadBytes - SET_TENSOR_DATA_OFFSET > LLAMA_RPC_HASH_THRESHOLD_BYTES ? [] : undefined
      },
      requestPayload: part => { parts?.push(Buffer.from(part)) },
      requestEnd: () => {
        if (parts === undefined) return
        const data = Buffer.concat(parts).subarray(SET_TENSOR_DATA_OFFSET)
        const middle = Math.floor(data.length / 2)
        this.samples.push(Buffer.from(data.subarray(middle, middle + SAMPLE_BYTES)))
        parts = undefined
      }
    })
    return { request: chunk => { framer.push(chunk) }, response: () => {} }
  }
}

describe('prompts at rest', { timeout: 600_000 }, () => {
  const saved = { TMPDIR: process.env.TMPDIR, LLMESH_CACHE: process.env.LLMESH_CACHE }
  let root: string
  let dirs: { worker: string, cache: string, temp: string }
  let model: TestModel
  let rpcServer: RpcServer
  let coordinator: TunnelNode
  let worker: TunnelNode

  before(async () => {
    const tools = await findLlamaCppTools()
    root = await mkdtemp(join(tmpdir(), 'llmesh-prompt-at-rest-'))
    dirs = { worker: join(root, 'worker'), cache: join(root, 'cache'), temp: join(root, 'tmp') }
    await Promise.all(Object.values(dirs).map(async dir => await mkdir(dir)))
    // Every process of the test, llama-server and rpc-server included, uses these as cache and temp dir.
    process.env.TMPDIR = dirs.temp
    process.env.LLMESH_CACHE = dirs.cache
    // 5376 wide: a micro-batch of 512 tokens is 5376 x 512 x 4 bytes = 10.5 MiB of hidden state.
    // Small key/value and feed-forward sizes keep it quick; f16, as ggml's AMX q8_0 kernel crashed on it here.
    model = await writeTestModel({ layers: 2, embd: 5376, ff: 128, heads: 42, kvHeads: 1, type: 'f16', ctx: 2048 })
    const facts = await readModelFacts(model.path)
    assert.ok(facts.embeddingLength * 512 * 4 > LLAMA_RPC_HASH_THRESHOLD_BYTES)
    const plan = planStages({ model: facts, coordinator: { id: 'coordinator', offeredBytes: GiB, speed: 1 }, workers: [{ id: 'worker', offeredBytes: GiB, speed: 1 }], contextSize: 2048 })
    assert.equal(plan.stages[1]?.layerCount, 1, 'the worker computes the second layer')

    rpcServer = await startRpcServer({ dataDir: dirs.worker, threads: 1, rpcServerPath: tools.rpcServer })
    coordinator = await startTunnelNode()
    worker = await startTunnelNode({
      bridge: {
        authorize: peer => peer.equals(coordinator.peerId),
        rpcServerPort: () => rpcServer.port,
        messageCapCeiling: () => messageCapFor(GiB),
        tensorCache: { dir: join(dirs.worker, 'tensor-cache'), maxBytes: () => GiB }
      }
    })
    await coordinator.dial(worker.getMultiaddrs()[0])
    activations = new ActivationSamples()
    const endpoint = await coordinator.services.rpcTunnel.openListener(worker.peerId, {
      maxMessageBytes: messageCapFor(largestStageTensorBytes(facts, plan, plan.stages[1])),
      traffic: () => activations.session()
    })
    llamaServerArgs = { modelPath: model.path, llamaServerPath: tools.llamaServer, threads: 1, contextSize: plan.contextSize, extraArgs: renderLlamaServerArgs(plan, { worker: endpoint }) }
  })

  let activations: ActivationSamples
  let llamaServerArgs: Parameters<typeof startLlamaServer>[0]

  after(async () => {
    await Promise.all([coordinator?.stop(), worker?.stop()])
    await rpcServer?.dispose()
    await model?.remove()
    if (root !== undefined) await rm(root, { recursive: true, force: true })
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) Reflect.deleteProperty(process.env, name)
      else process.env[name] = value
    }
  })

  it('leaves no file grown or holding a hidden state, and no process able to dump its memory', async () => {
    const server = await startLlamaServer(llamaServerArgs)
    try {
      for (const pid of [server.pid, rpcServer.pid]) {
        const limits = await readFile(`/proc/${pid as number}/limits`, 'utf8')
        assert.match(limits, /^Max core file size\s+0\s+0\s/m, `core dumps of process ${pid as number}`)
      }
      const roots = Object.values(dirs)
      const loaded = await settled(roots)
      assert.ok([...loaded.keys()].some(path => path.startsWith(join(dirs.worker, 'tensor-cache'))), 'the worker keeps the weights')
      const sentBefore = activations.samples.length

      for (let n = 0; n < PROMPTS; n++) {
        const prompt = promptText(n + 1, 150)
        const tokens = await server.tokenize(prompt)
        assert.ok(tokens.length > 600 && tokens.length < 2000, `prompt ${n} has ${tokens.length} tokens: more than one micro-batch, less than the context`)
        for await (const piece of server.generate(prompt, { maxTokens: 1 })) assert.ok(piece.token >= 0)
      }
      const sent = activations.samples.slice(sentBefore)
      assert.ok(sent.length >= PROMPTS, `the coordinator sent ${sent.length} hidden-state batches over 10 MiB`)

      const after = await settled(roots)
      const grown = [...after].filter(([path, file]) => (loaded.get(path)?.size ?? -1) < file.size).map(([path]) => path)
      assert.deepEqual(grown, [], 'files that appeared or grew with the prompts')
      for (const path of after.keys()) {
        const content = await readFile(path)
        for (const sample of sent) {
          assert.equal(content.indexOf(sample), -1, `${path} holds hidden-state bytes (sample ${createHash('sha256').update(sample).digest('hex').slice(0, 12)})`)
        }
      }
    } finally {
      await server.dispose()
      await coordinator.services.rpcTunnel.closeListeners()
    }
  })
})
