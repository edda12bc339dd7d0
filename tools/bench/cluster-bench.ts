import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { measureDecode, median, WARMUP_TOKENS, type DecodeRun } from '../../engine/benchmark.js'
import type { Engine } from '../../engine/engine.js'
import { startLlamaServer } from '../../engine/llama-server.js'
import { loadLocalEngine } from '../../engine/local-engine.js'
import { readModelFacts } from '../../engine/model-facts.js'
import { startRpcServer, type RpcServer } from '../../engine/rpc-server.js'
import { messageCapFor } from '../../protocols/rpc-tunnel/index.js'
import { largestStageTensorBytes, planStages, renderLlamaServerArgs, type Stage, type StagePlan } from '../../scheduler/index.js'
import { sessionCarriers, startTunnelNode, type TunnelCarrier } from '../tunnel-node.js'
import { connectToFarEnd, startFarEnd } from './tunnel-bench-far-end.js'
import type { PeerId } from '@libp2p/interface'

/** One side of the comparison: decode and prompt-reading speed. */
interface Speeds {
  tokens_per_second: number
  prefill_tokens_per_second: number
}

/** Result of `mesh bench cluster`; the JSON field names are a public contract (issue 4). */
export interface ClusterBenchResult extends Speeds {
  baseline: { name: 'llama-server --rpc direct' } & Speeds
  ratio: number
  identical_output: boolean
  plan: Array<{ node: string, role: 'coordinator' | 'worker', first_layer: number, layers: number }>
  /** decode time per token through the tunnel, median over the runs, in ms (issue 23) */
  ms_per_token: number
  /** the same with `--rpc` pointed at the rpc-servers directly */
  baseline_ms_per_token: number
  /** llama-server's start until healthy through the tunnel, the workers' tensor caches empty, median over the runs, in ms (issue 23) */
  load_ms: number
  /** the same with `--rpc` pointed at the rpc-servers directly */
  baseline_load_ms: number
  /** what carried the tunnel's sessions: "data-channel" (TLS beside libp2p) or "libp2p" (tunnel streams) */
  carrier: string
}

export interface ClusterBenchOptions {
  modelPath: string
  workers: number
  /** tokens to generate per measured run (at least 2) */
  tokens: number
  /** measured runs per side; the median is reported (default 3) */
  runs?: number
  /** the libp2p transport the tunnel crosses: 'tcp' (default, as with mesh start's default address) or 'quic' */
  transport?: 'tcp' | 'quic'
  /** what carries the sessions (default 'data-channel', as between nodes); one that cannot be used falls back to libp2p, and the result says so */
  carrier?: TunnelCarrier
}

const PROMPT = 'The quick brown fox jumps over the lazy dog.'
// Every process gets one thread: coordinator and workers share this machine's cores.
const THREADS = 1
const CONTEXT_SIZE = 1024
const PREFILL_PROMPT_REPEATS = 16

// Prompt reading: the time to the first token of a long prompt given as token ids.
async function measurePrefill (engine: Engine, promptTokens: readonly number[], bannedTokens: readonly number[]): Promise<number> {
  const start = performance.now()
  for await (const piece of engine.generate({ tokens: promptTokens }, { maxTokens: 1, ignoreEos: true, bannedTokens })) void piece
  return promptTokens.length / ((performance.now() - start) / 1000)
}

/** One engine start of one side: decode and prompt-reading speed, and the tokens it decoded. */
async function measureOnce (modelPath: string, args: string[], tokens: number, promptTokens: readonly number[], bannedTokens: readonly number[]): Promise<DecodeRun & { prefill: number }> {
  const server = await startLlamaServer({ modelPath, threads: THREADS, extraArgs: args })
  try {
    await measureDecode(server, PROMPT, WARMUP_TOKENS, bannedTokens)
    const decode = await measureDecode(server, PROMPT, tokens, bannedTokens)
    return { ...decode, prefill: await measurePrefill(server, promptTokens, bannedTokens) }
  } finally {
    await server.dispose()
  }
}

/** Milliseconds from llama-server's start until it is healthy: its model loaded, weights sent to the workers. */
async function measureLoad (modelPath: string, args: string[]): Promise<number> {
  const start = performance.now()
  const server = await startLlamaServer({ modelPath, threads: THREADS, extraArgs: args })
  const ms = performance.now() - start
  await server.dispose()
  return ms
}

/** The median speeds (and decode time per token) of several runs of one side, with the first run's tokens. */
function summarize (runs: ReadonlyArray<DecodeRun & { prefill: number }>): DecodeRun & { prefill: number, msPerToken: number } {
  return {
    tokens: runs[0].tokens,
    tokensPerSecond: median(runs.map(run => run.tokensPerSecond)),
    prefill: median(runs.map(run => run.prefill)),
    msPerToken: median(runs.map(run => 1000 / run.tokensPerSecond))
  }
}

/**
 * Measures llama-server with its layers split over `workers` rpc-servers, once with `--rpc`
 * pointed at the rpc-servers directly and once through the libp2p tunnel (real nodes on
 * 127.0.0.1, TCP + Noise + yamux): same binary, plan, rpc-server processes and prompt.
 */
export async function benchCluster (options: ClusterBenchOptions): Promise<ClusterBenchResult> {
  const runs = options.runs ?? 3
  const facts = await readModelFacts(options.modelPath)
  const local = await loadLocalEngine({ modelPath: options.modelPath, threads: THREADS })
  let bannedTokens: number[]
  let promptTokens: number[]
  try {
    // llama-server answers HTTP 500 on output that is not valid UTF-8 (lone byte tokens).
    bannedTokens = local.partialCharacterTokens()
    promptTokens = local.tokenize(Array(PREFILL_PROMPT_REPEATS).fill(PROMPT).join(' ')).slice(0, CONTEXT_SIZE / 2)
  } finally {
    await local.dispose()
  }
  const offeredBytes = Math.floor(totalmem() / (options.workers + 1))
  const workerIds = Array.from({ length: options.workers }, (_, i) => `worker-${i + 1}`)
  const plan: StagePlan = planStages({
    model: facts,
    coordinator: { id: 'coordinator', offeredBytes, speed: 1 },
    workers: workerIds.map(id => ({ id, offeredBytes, speed: 1 })),
    contextSize: CONTEXT_SIZE
  })

  const dataDir = await mkdtemp(join(tmpdir(), 'llmesh-bench-cluster-'))
  const tensorCacheDir = (nodeId: string): string => join(dataDir, nodeId, 'tensor-cache')
  const rpcServers: RpcServer[] = []
  // Stopped in reverse order: the worker peers, then the coordinator.
  const stops: Array<() => Promise<void>> = []
  try {
    for (const id of workerIds) rpcServers.push(await startRpcServer({ dataDir: join(dataDir, id), threads: THREADS }))
    const direct = Object.fromEntries(workerIds.map((id, i) => [id, `127.0.0.1:${String(rpcServers[i].port)}`]))

    const transports = options.transport === 'quic' ? 'tcp+quic' : 'tcp'
    const coordinator = await startTunnelNode({ dataChannel: (options.carrier ?? 'data-channel') === 'data-channel' }, transports)
    stops.push(async () => { await coordinator.stop() })
    const workerStages: Array<{ stage: Stage, peerId: PeerId }> = []
    for (const stage of plan.stages.slice(1)) {
      const server = rpcServers[workerIds.indexOf(stage.nodeId)]
      // Each worker peer in a thread of its own, as on a machine of its own: the coordinator's
      // event loop does not also decrypt and bridge the workers' traffic.
      const worker = await startFarEnd(coordinator.peerId.toString(), transports, {
        rpcServerPort: server.port,
        messageCapCeiling: messageCapFor(offeredBytes),
        tensorCache: { dir: tensorCacheDir(stage.nodeId), maxBytes: offeredBytes }
      })
      stops.push(worker.stop)
      workerStages.push({ stage, peerId: await connectToFarEnd(coordinator, worker, options.transport ?? 'tcp') })
    }
    // New listeners for every engine start, as the coordinator opens them: each learns what the
    // worker's tensor cache holds, so only the first start sends the weights (and has the worker
    // hash and store them while it decodes).
    const tunnelArgs = async (): Promise<string[]> => {
      await coordinator.services.rpcTunnel.closeListeners()
      const tunnelled: Record<string, string> = {}
      for (const { stage, peerId } of workerStages) {
        tunnelled[stage.nodeId] = await coordinator.services.rpcTunnel.openListener(peerId, {
          maxMessageBytes: messageCapFor(largestStageTensorBytes(facts, plan, stage))
        })
      }
      return renderLlamaServerArgs(plan, tunnelled)
    }
    // The sides take turns, each run on a fresh llama-server (rpc-server serves one at a time),
    // so that a change in the machine's load hits both alike.
    const sides = { baseline: async () => renderLlamaServerArgs(plan, direct), tunnel: tunnelArgs }
    // Loads first, each with the workers' tensor caches empty, as a first load is. The cap exchange
    // waits until a worker has stored what the last load sent, so nothing of it is left to write.
    const emptyTensorCaches = async (): Promise<void> => {
      await tunnelArgs()
      await coordinator.services.rpcTunnel.closeListeners()
      for (const dir of workerStages.map(({ stage }) => tensorCacheDir(stage.nodeId))) {
        for (const name of await readdir(dir)) await rm(join(dir, name), { force: true })
      }
    }
    const loads = { baseline: [] as number[], tunnel: [] as number[] }
    for (let run = 0; run < runs; run++) {
      for (const side of run % 2 === 0 ? ['baseline', 'tunnel'] as const : ['tunnel', 'baseline'] as const) {
        await emptyTensorCaches()
        loads[side].push(await measureLoad(options.modelPath, await sides[side]()))
      }
    }
    const measured = { baseline: [] as Array<DecodeRun & { prefill: number }>, tunnel: [] as Array<DecodeRun & { prefill: number }> }
    for (let run = 0; run < runs; run++) {
      for (const side of run % 2 === 0 ? ['baseline', 'tunnel'] as const : ['tunnel', 'baseline'] as const) {
        measured[side].push(await measureOnce(options.modelPath, await sides[side](), options.tokens, promptTokens, bannedTokens))
      }
    }
    const baseline = summarize(measured.baseline)
    const tunnel = summarize(measured.tunnel)

    return {
      tokens_per_second: tunnel.tokensPerSecond,
      prefill_tokens_per_second: tunnel.prefill,
      baseline: { name: 'llama-server --rpc direct', tokens_per_second: baseline.tokensPerSecond, prefill_tokens_per_second: baseline.prefill },
      ratio: tunnel.tokensPerSecond / baseline.tokensPerSecond,
      identical_output: tunnel.tokens.length === baseline.tokens.length && tunnel.tokens.every((token, i) => token === baseline.tokens[i]),
      plan: plan.stages.map(stage => ({ node: stage.nodeId, role: stage.role, first_layer: stage.firstLayer, layers: stage.layerCount })),
      ms_per_token: tunnel.msPerToken,
      baseline_ms_per_token: baseline.msPerToken,
      load_ms: median(loads.tunnel),
      baseline_load_ms: median(loads.baseline),
      carrier: (await sessionCarriers(coordinator)).join('+')
    }
  } finally {
    for (const stop of stops.reverse()) await stop()
    await Promise.all(rpcServers.map(async server => { await server.dispose() }))
    await rm(dataDir, { recursive: true, force: true })
  }
}
