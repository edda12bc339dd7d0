import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from '../../engine/free-port.js'
import { writeGgufFile } from '../../engine/gguf/index.js'
import { loadLocalEngine } from '../../engine/local-engine.js'
import { DEFAULT_SYNTHETIC_MODEL_OPTIONS, SPECIAL_TOKENS, syntheticModelContent, type SyntheticModelOptions } from '../../engine/synthetic-model/index.js'
import { controlRequest } from '../../node/control-socket.js'
import { dataDir } from '../../node/data-dir.js'
import { shortPeerId } from '../../node/short-peer-id.js'
import { requestStatus } from '../../node/status-request.js'
import { metricSample } from '../metric-sample.js'
import { waitForApi } from '../up/api-ready.js'
import { LocalCluster, upLayout } from '../up/local-cluster.js'

/** Result of `mesh bench failover`; the JSON field names are a public contract (issue 6). */
export interface FailoverBenchResult {
  /** SIGKILL of a worker -> the coordinator declares it dead */
  detect_ms: number
  /** declared dead -> the coordinator chose the new plan */
  replan_ms: number
  /** new plan chosen -> its engine is ready */
  reload_ms: number
  /** the first engine start on the full plan (plan chosen -> ready) */
  first_load_ms: number
  /** SIGKILL -> the first token of the resumed generation on the client's stream */
  resume_ms: number
  /** the disturbed stream's text equals an undisturbed run's */
  identical_output: boolean
}

/** What the benchmark saw besides its result, for a person or a test to judge it by. */
export interface FailoverBenchReport {
  result: FailoverBenchResult
  /** tokens (stream events) the client had received when the worker was killed, and in all */
  tokensBeforeKill: number
  tokensInAll: number
  /** tensor data the surviving worker received through the tunnel, or took from a cache, at the first load and at the reload */
  survivorUpload: { firstLoad: TensorUpload, reload: TensorUpload }
  /** the layers the surviving worker held before the kill and after the reload */
  survivorLayers: { before: LayerRange, after: LayerRange }
}

/** Layers `first` to `first + count - 1`; a count of 0 is no layers. */
export interface LayerRange {
  first: number
  count: number
}

/** Tensor data a worker received: whole through the tunnel, or from a cache instead. */
export interface TensorUpload {
  /** SET_TENSOR requests that crossed the network */
  setTensorBytes: number
  /** SET_TENSOR_HASH requests: llama.cpp asking whether the worker holds a large tensor (its tensor cache answers for the weights it keeps) */
  setTensorHashBytes: number
  /** tensor data the tunnel's tensor cache passed to rpc-server instead of the network */
  tensorCacheHitBytes: number
}

export interface FailoverBenchOptions {
  /** tokens of the streamed completion */
  tokens: number
  /** the worker is killed once the client has received this many tokens */
  killAfterTokens: number
  /** overrides of the benchmark's model (default: 16 layers, 1024 wide, f16) */
  model?: Partial<SyntheticModelOptions>
  /** told each step, for a person to follow */
  progress?: (line: string) => void
}

/** The model issue 6 measures on: 16 layers, 1024 wide, f16. */
export const FAILOVER_MODEL: Partial<SyntheticModelOptions> = { layers: 16, embd: 1024, ff: 2816, heads: 16, kvHeads: 4, type: 'f16' }

const PROMPT = 'The quick brown fox jumps over the lazy dog.'
const WORKERS = 2
const STREAM_TIMEOUT_MS = 300_000
/** How long after the stream the coordinator's log may take to show the whole failover. */
const LOG_WAIT_MS = 30_000

/** The surviving worker on the plan that resumed the stream. */
interface SurvivorAfterReload { layers: LayerRange, upload: TensorUpload }

/** One log line of a node: when and what. */
interface LogLine { at: number, text: string }

/** A streamed completion's text and the time (Date.now()) each token with text arrived. */
export interface StreamedCompletion { text: string, arrivals: number[] }

/**
 * Starts a coordinator and two workers (`mesh start` processes on 127.0.0.1), streams a greedy
 * completion once undisturbed and once with a SIGKILL of one worker mid-stream, and times
 * detection, re-plan, reload and resumption from the coordinator's log and the client's stream.
 */
export async function benchFailover (options: FailoverBenchOptions): Promise<FailoverBenchReport> {
  const progress = options.progress ?? (() => {})
  const home = await mkdtemp(join(tmpdir(), 'llmesh-bench-failover-'))
  const stop = new AbortController()
  const layout = upLayout(home)
  let cluster: LocalCluster | undefined
  try {
    const modelPath = join(home, 'model.gguf')
    await writeGgufFile(modelPath, syntheticModelContent({ ...DEFAULT_SYNTHETIC_MODEL_OPTIONS, ...FAILOVER_MODEL, ...options.model }))
    const logitBias = await bannedTokenBias(modelPath)
    const port = await freePort()
    const apiBase = `http://127.0.0.1:${port}`
    cluster = new LocalCluster({
      layout,
      workers: WORKERS,
      // One pipeline: the bench times its recovery (replica groups fail over without a reload).
      coordinatorArgs: ['--model', modelPath, '--engine', 'auto', '--placement', 'pipeline', '--api-host', '127.0.0.1', '--api-port', String(port)],
      progress,
      signal: stop.signal
    })
    const coordinatorDir = cluster.coordinatorDir
    const engine = await cluster.start(async signal => await waitForApi(apiBase, coordinatorDir, WORKERS, signal))
    // The victim is the first worker stage, so that the survivor keeps its layers and reloads
    // them from its tensor cache while the coordinator takes the lost ones: the case of a model
    // that needs the workers. (Were the last stage killed, the coordinator of this small model
    // would take every layer and reload without the network.)
    const workerIds = await Promise.all([1, 2].map(async n => (await requestStatus(dataDir(layout.worker(n)))).self.peerId))
    // The planner shares layers by measured speed and may leave a worker out; then the one holding layers dies.
    const firstWorkerStage = (engine.plan?.stages ?? []).find(stage => stage.role === 'worker' && stage.layerCount > 0)
    if (firstWorkerStage === undefined) throw new Error(`the plan gives no worker layers, so killing one tests nothing:\n${engine.planTable ?? ''}`)
    const victimIndex = workerIds.indexOf(firstWorkerStage.nodeId)
    const victimId = workerIds[victimIndex]
    const survivor = dataDir(layout.worker(2 - victimIndex))
    progress(`plan:\n${engine.planTable ?? ''}`)
    const apiKey = (await readFile(coordinatorDir.apiKey, 'utf8')).trim()
    const request = { model: 'model', prompt: PROMPT, max_tokens: options.tokens, temperature: 0, logit_bias: logitBias, stream: true }

    progress('streaming the undisturbed completion')
    const reference = await streamCompletion(apiBase, apiKey, request)
    const firstUpload = await tensorUpload(survivor.root)

    progress(`streaming again, killing worker-${victimIndex + 1} (SIGKILL) after ${options.killAfterTokens} tokens`)
    // The coordinator rebalances its recovery plan once the stream ends: the survivor is looked
    // at while the resumed stream runs, on the plan that resumed it.
    const survivorId = workerIds[1 - victimIndex]
    const lookAtSurvivor = async (): Promise<SurvivorAfterReload | undefined> => {
      const engine = (await requestStatus(coordinatorDir)).engine
      const plan = engine?.plan
      if (engine?.state !== 'ready' || plan == null || plan.stages.some(stage => stage.nodeId === victimId)) return undefined
      return { layers: layersOf(plan.stages, survivorId), upload: await tensorUpload(survivor.root) }
    }
    let killedAt = 0
    let afterReload: SurvivorAfterReload | undefined
    let looking: Promise<void> | undefined
    const disturbed = await streamCompletion(apiBase, apiKey, request, received => {
      if (received === options.killAfterTokens) {
        killedAt = Date.now()
        cluster?.nodes[victimIndex + 1].kill()
      } else if (received > options.killAfterTokens && afterReload === undefined && looking === undefined) {
        looking = lookAtSurvivor().then(seen => { afterReload = seen }).finally(() => { looking = undefined })
      }
    })
    if (killedAt === 0) throw new Error(`the stream ended after ${disturbed.arrivals.length} tokens, before the worker could be killed; ask for more tokens`)
    await looking
    if (afterReload === undefined) throw new Error('the resumed stream ended before the coordinator reported the plan without the killed worker')

    const timing = await awaitFailoverTiming(cluster.nodes[0].logFile, killedAt, victimId)
    const resumedAt = disturbed.arrivals.find(at => at >= timing.readyAt)
    if (resumedAt === undefined) throw new Error('no token reached the client after the new engine was ready')
    return {
      result: {
        detect_ms: timing.detectedAt - killedAt,
        // 0 when the plan came first (see failoverTiming)
        replan_ms: Math.max(0, timing.plannedAt - timing.detectedAt),
        reload_ms: timing.readyAt - timing.plannedAt,
        first_load_ms: timing.firstLoadMs,
        resume_ms: resumedAt - killedAt,
        identical_output: disturbed.text === reference.text
      },
      tokensBeforeKill: options.killAfterTokens,
      tokensInAll: disturbed.arrivals.length,
      survivorUpload: { firstLoad: firstUpload, reload: subtract(afterReload.upload, firstUpload) },
      survivorLayers: { before: layersOf(engine.plan?.stages ?? [], survivorId), after: afterReload.layers }
    }
  } catch (err) {
    // The node logs go with the temporary home: keep the coordinator's last lines in the error.
    const coordinator = cluster?.nodes[0]
    if (coordinator === undefined) throw err
    throw new Error(`${(err as Error).message}\n${await coordinator.describeEnd(40)}`, { cause: err })
  } finally {
    stop.abort()
    await cluster?.stop()
    await rm(home, { recursive: true, force: true })
  }
}

/**
 * The `logit_bias` that keeps a greedy completion of a synthetic model to whole characters and
 * its full length: a random-weight model strings lone UTF-8 bytes together, which llama-server
 * refuses to send, and may end early at its end-of-text token.
 */
export async function bannedTokenBias (modelPath: string): Promise<Record<string, number>> {
  const local = await loadLocalEngine({ modelPath, threads: 1, contextSize: 256 })
  try {
    const eos = local.tokenize(SPECIAL_TOKENS.eos, { special: true }).at(-1)
    const banned = [...local.partialCharacterTokens(), ...(eos === undefined ? [] : [eos])]
    return Object.fromEntries(banned.map(token => [String(token), -100]))
  } finally {
    await local.dispose()
  }
}

function layersOf (stages: ReadonlyArray<{ nodeId: string, firstLayer: number, layerCount: number }>, nodeId: string): LayerRange {
  const stage = stages.find(stage => stage.nodeId === nodeId)
  return { first: stage?.firstLayer ?? 0, count: stage?.layerCount ?? 0 }
}

/** Streams a completion; `onToken` is told the count of tokens (events with text) received so far. */
export async function streamCompletion (apiBase: string, apiKey: string, body: object, onToken?: (received: number) => void): Promise<StreamedCompletion> {
  const response = await fetch(`${apiBase}/v1/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(STREAM_TIMEOUT_MS)
  })
  if (response.status !== 200 || response.body == null) throw new Error(`the API answered ${response.status}: ${await response.text()}`)
  const completion: StreamedCompletion = { text: '', arrivals: [] }
  const decoder = new TextDecoder()
  let buffered = ''
  for await (const chunk of response.body) {
    buffered += decoder.decode(chunk as Uint8Array, { stream: true })
    const events = buffered.split('\n\n')
    buffered = events.pop() ?? ''
    for (const event of events) {
      const data = event.replace(/^data: /, '')
      if (data === '[DONE]') return completion
      const parsed = JSON.parse(data) as { choices?: Array<{ text: string }>, error?: { message: string } }
      if (parsed.error != null) throw new Error(`the stream ended with an error after ${completion.arrivals.length} tokens: ${parsed.error.message}`)
      // Banned partial characters make every token an event with text; the last event only has the finish reason.
      const text = parsed.choices?.[0]?.text ?? ''
      if (text === '') continue
      completion.text += text
      completion.arrivals.push(Date.now())
      onToken?.(completion.arrivals.length)
    }
  }
  throw new Error(`the stream ended without [DONE] after ${completion.arrivals.length} tokens`)
}

/** Reads a node's log: "ISO-time level message" lines; a line without a time continues the message before it (a plan table). */
async function readLog (file: string): Promise<LogLine[]> {
  const lines: LogLine[] = []
  for (const line of (await readFile(file, 'utf8')).split('\n')) {
    const match = /^(\d{4}-\d\d-\d\dT\S+Z) +\w+ +(.*)$/.exec(line)
    if (match != null) lines.push({ at: Date.parse(match[1]), text: match[2] })
    else if (lines.length > 0) lines[lines.length - 1].text += `\n${line}`
  }
  return lines
}

/** The full plan's first load failed, so no load before the kill was made with empty caches. */
class FirstLoadFailedError extends Error {
  constructor (how: string) {
    super(`the full plan's first load did not finish (${how}), and a later load finds the workers' caches filled: no first load to measure`)
    this.name = 'FirstLoadFailedError'
  }
}

/**
 * Reads the failover's timing from the coordinator's log, waiting for lines still to come: a
 * short stream can end on the new engine before the failure detector declares the worker dead.
 */
async function awaitFailoverTiming (logFile: string, killedAt: number, victim: string): Promise<ReturnType<typeof failoverTiming>> {
  const deadline = Date.now() + LOG_WAIT_MS
  for (;;) {
    try {
      return failoverTiming(await readLog(logFile), killedAt, victim, WORKERS)
    } catch (err) {
      // Lines still to come cannot mend a first load that failed before the kill.
      if (err instanceof FirstLoadFailedError || Date.now() > deadline) throw err
      await sleep(250)
    }
  }
}

/**
 * When the coordinator declared the killed worker dead, chose a plan without it and had that
 * plan's engine ready; how long the full plan took to load. The plan can come before the death
 * sentence: llama-server exits at once when a worker's connection breaks, and its restart
 * re-plans on the members still alive, which leaves out a worker already suspect.
 */
function failoverTiming (log: LogLine[], killedAt: number, victim: string, workers: number): { detectedAt: number, plannedAt: number, readyAt: number, firstLoadMs: number } {
  const after = (from: number, pattern: RegExp, what: string): number => {
    const index = log.findIndex((line, i) => i > from && pattern.test(line.text))
    if (index < 0) throw new Error(`the coordinator's log has no line for ${what}`)
    return index
  }
  // The first load of the full plan, made while the workers' caches were empty: a later one (a
  // rebalance, or a retry after a failed load) finds tensors cached and would pass for a fast first load.
  const fullPlan = log.findIndex(line => line.at <= killedAt && line.text.startsWith(`serving with ${workers} worker(s)`))
  if (fullPlan < 0) throw new Error('the coordinator\'s log does not show the full plan before the kill')
  const firstLoadEnd = after(fullPlan, /^(engine ready|serving with|the engine failed)/, 'the end of the full plan\'s first load')
  if (!log[firstLoadEnd].text.startsWith('engine ready')) {
    throw new FirstLoadFailedError(log[firstLoadEnd].text.split('\n')[0])
  }
  const firstAfterKill = log.findIndex(line => line.at >= killedAt)
  const killed = firstAfterKill < 0 ? log.length : firstAfterKill
  const detected = after(killed - 1, new RegExp(`^member ${shortPeerId(victim).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} (declared dead|left)`), 'the killed worker\'s death')
  const planned = log.findIndex((line, i) => i >= killed && line.text.startsWith('serving with ') && !line.text.includes(victim))
  if (planned < 0) throw new Error('the coordinator\'s log has no line for the plan without the killed worker')
  const ready = after(planned, /^engine ready/, 'the engine on the new plan')
  return { detectedAt: log[detected].at, plannedAt: log[planned].at, readyAt: log[ready].at, firstLoadMs: log[firstLoadEnd].at - log[fullPlan].at }
}

/** Tensor bytes a worker's tunnel bridge passed to its rpc-server so far, from its metrics. */
async function tensorUpload (workerHome: string): Promise<TensorUpload> {
  const dir = dataDir(workerHome)
  const { text } = await controlRequest(dir.controlSocket, dir.root, { op: 'metrics' }) as { text: string }
  return {
    // set_tensor_cached is counted apart: its data never crossed the network
    setTensorBytes: metricSample(text, 'llmesh_rpc_request_bytes_total{command="set_tensor"}'),
    setTensorHashBytes: metricSample(text, 'llmesh_rpc_request_bytes_total{command="set_tensor_hash"}'),
    tensorCacheHitBytes: metricSample(text, 'llmesh_rpc_tensor_cache_bytes_total{event="hit"}')
  }
}

function subtract (a: TensorUpload, b: TensorUpload): TensorUpload {
  return {
    setTensorBytes: a.setTensorBytes - b.setTensorBytes,
    setTensorHashBytes: a.setTensorHashBytes - b.setTensorHashBytes,
    tensorCacheHitBytes: a.tensorCacheHitBytes - b.tensorCacheHitBytes
  }
}
