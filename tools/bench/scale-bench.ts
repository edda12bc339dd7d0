import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from '../../engine/free-port.js'
import { startLlamaServer } from '../../engine/llama-server.js'
import { runLoadInWorker, type LoadRun, type LoadSpec } from './api-bench-load.js'
import { bannedTokenBias, streamCompletion } from './failover-bench.js'
import { readModelFacts } from '../../engine/model-facts.js'
import { servedModelId, waitForApi } from '../up/api-ready.js'
import { LocalCluster, upLayout } from '../up/local-cluster.js'
import { coordinatorPartBytes, type Placement } from '../../scheduler/index.js'
import { median } from '../../engine/benchmark.js'

/** Result of `mesh bench scale`; the JSON field names are a public contract (issue 19). */
export interface ScaleBenchResult {
  workers: number
  concurrency: number
  /** the median over the runs, as for the other setups */
  single_node: { tokens_per_second: number }
  pipeline: { tokens_per_second: number, groups: number }
  auto: { tokens_per_second: number, groups: number }
  /** auto over pipeline, from the medians */
  ratio: number
  /** the greedy completion of the prompt was the same on one node, the pipeline and the auto layout */
  identical_output: boolean
  /** every run's tokens per second of each setup, in the order measured */
  runs: { single_node: number[], pipeline: number[], auto: number[] }
}

export interface ScaleBenchOptions {
  modelPath: string
  workers: number
  /** requests in flight at once, and each llama-server's parallel slots */
  concurrency: number
  /** tokens each request generates */
  tokens: number
  /** measured rounds; in each, every setup takes its turn (default 3) */
  runs?: number
  /** told each step, for the user to read */
  progress?: (line: string) => void
}

const PROMPT = 'The quick brown fox jumps over the lazy dog.'
// Waves of `concurrency` requests one run of a setup measures.
const WAVES_PER_RUN = 2
const TASKSET = '/usr/bin/taskset'

/** One setup under test, loaded for the whole bench. */
interface Setup {
  name: 'single_node' | 'pipeline' | 'auto'
  groups: number
  /** the greedy completion of the prompt, alone */
  text: string
  load: LoadSpec
  stop: () => Promise<void>
}

/** One run of a setup: `WAVES_PER_RUN` waves of requests; the decode speed of all of them together. */
async function measure (spec: LoadSpec): Promise<number> {
  const runs: LoadRun[] = []
  for (let wave = 0; wave < WAVES_PER_RUN; wave++) runs.push(await runLoadInWorker(spec))
  const errors = runs.reduce((sum, run) => sum + run.errors, 0)
  if (errors > 0) throw new Error(`${errors} requests failed; the measurement would be meaningless`)
  return runs.reduce((sum, run) => sum + run.tokens, 0) / runs.reduce((sum, run) => sum + run.seconds, 0)
}

/**
 * Runs the same load (`concurrency` greedy streaming requests of `tokens` tokens at a time) on
 * llama-server alone, and through the API of a coordinator with `workers` workers laid out as
 * one pipeline and of another laid out automatically: decode speed of all requests together.
 * The three setups stay loaded, and `runs` rounds take turns on them (each round in another
 * order), so that a machine whose load drifts weighs on all three alike; medians are reported.
 * Separate machines would not share a core, so each worker (its node and its rpc-server, which
 * then computes with one thread) is pinned to a core of its own, as is llama-server alone; the
 * coordinator's llama-servers compute with one thread each.
 */
export async function benchScale (options: ScaleBenchOptions): Promise<ScaleBenchResult> {
  const { modelPath, workers, concurrency, tokens } = options
  const runs = options.runs ?? 3
  const progress = options.progress ?? (() => {})
  const bias = await bannedTokenBias(modelPath)
  const banned = Object.keys(bias).map(Number)
  // Room in every slot for the prompt and the reply, with margin.
  const contextSize = concurrency * (tokens + 128)
  const cores = availableParallelism()
  // The coordinator offers room for its part of one group per worker and no more: in a pipeline
  // too it then keeps little beyond layer 0 and the head, off the critical path as far as it can.
  const coordinatorMemory = workers * coordinatorPartBytes({
    model: await readModelFacts(modelPath),
    coordinator: { id: 'coordinator', offeredBytes: 0, speed: 1 },
    workers: [],
    contextSize,
    parallel: concurrency
  })
  const dir = await mkdtemp(join(tmpdir(), 'llmesh-bench-scale-'))
  const setups: Setup[] = []

  /** llama-server alone, and the prompt's tokens by its tokenizer (the clusters get the same). */
  const singleNode = async (): Promise<{ setup: Setup, promptTokens: number[] }> => {
    progress('one node: llama-server alone, one thread pinned to CPU 0')
    const socketPath = join(dir, 'llama-server.sock')
    const server = await startLlamaServer({ modelPath, threads: 1, parallel: concurrency, contextSize, listen: { socketPath } })
    try {
      if (server.pid !== undefined) await promisify(execFile)(TASKSET, ['--all-tasks', '--cpu-list', '--pid', '0', String(server.pid)])
      const promptTokens = await server.tokenize(PROMPT, { special: true })
      let text = ''
      for await (const piece of server.generate({ tokens: promptTokens }, { maxTokens: tokens, bannedTokens: banned })) text += piece.text
      const load: LoadSpec = {
        concurrency,
        requests: concurrency,
        events: 'llama-server',
        http: { socketPath, path: '/completion' },
        body: JSON.stringify({ prompt: promptTokens, n_predict: tokens, temperature: 0, top_k: 0, top_p: 1, min_p: 0, logit_bias: banned.map(token => [token, false]), stream: true, return_tokens: true, cache_prompt: false })
      }
      return { setup: { name: 'single_node', groups: 1, text, load, stop: async () => { await server.dispose() } }, promptTokens }
    } catch (err) {
      await server.dispose()
      throw err
    }
  }

  const cluster = async (placement: Placement, promptTokens: number[]): Promise<Setup> => {
    const port = await freePort()
    const apiBase = `http://127.0.0.1:${port}`
    const local = new LocalCluster({
      layout: upLayout(join(dir, placement)),
      workers,
      workerCpus: n => String((n - 1) % cores),
      coordinatorArgs: ['--model', modelPath, '--engine', 'cluster', '--placement', placement, '--parallel', String(concurrency), '--ctx', String(contextSize), '--threads', '1',
        '--memory', String(coordinatorMemory), '--api-host', '127.0.0.1', '--api-port', String(port), '--rate-limit-key', '0', '--rate-limit-ip', '0'],
      progress,
      signal: new AbortController().signal
    })
    try {
      const engine = await local.start(async signal => await waitForApi(apiBase, local.coordinatorDir, workers, signal))
      const groups = engine.groups?.length ?? 1
      progress(`${placement}: ${groups} replica group(s) ready:\n${engine.planTable ?? ''}`)
      const apiKey = (await readFile(local.coordinatorDir.apiKey, 'utf8')).trim()
      const request = { model: await servedModelId(apiBase, apiKey), prompt: promptTokens, max_tokens: tokens, temperature: 0, logit_bias: bias, stream: true }
      // One request alone first: its text is compared, and a refusal stops the bench with the API's own message.
      const { text } = await streamCompletion(apiBase, apiKey, request)
      const load: LoadSpec = {
        concurrency,
        requests: concurrency,
        events: 'openai',
        http: { host: '127.0.0.1', port, path: '/v1/completions', headers: { authorization: `Bearer ${apiKey}` } },
        body: JSON.stringify({ ...request, stream_options: { include_usage: true } })
      }
      return { name: placement === 'pipeline' ? 'pipeline' : 'auto', groups, text, load, stop: async () => { await local.stop() } }
    } catch (err) {
      await local.stop()
      throw err
    }
  }

  try {
    const { setup: single, promptTokens } = await singleNode()
    setups.push(single)
    setups.push(await cluster('pipeline', promptTokens))
    setups.push(await cluster('auto', promptTokens))
    // One warm-up wave each pages the model in and fills every slot.
    for (const setup of setups) await runLoadInWorker(setup.load)
    const speeds = { single_node: [] as number[], pipeline: [] as number[], auto: [] as number[] }
    for (let run = 0; run < runs; run++) {
      for (let turn = 0; turn < setups.length; turn++) {
        const setup = setups[(run + turn) % setups.length]
        const tokensPerSecond = await measure(setup.load)
        speeds[setup.name].push(tokensPerSecond)
        progress(`run ${run + 1}/${runs}, ${setup.name}: ${tokensPerSecond.toFixed(1)} tokens/s`)
      }
    }
    const [s, p, a] = (['single_node', 'pipeline', 'auto'] as const).map(name => median(speeds[name]))
    const [, pipeline, auto] = setups
    return {
      workers,
      concurrency,
      single_node: { tokens_per_second: s },
      pipeline: { tokens_per_second: p, groups: pipeline.groups },
      auto: { tokens_per_second: a, groups: auto.groups },
      ratio: a / p,
      identical_output: single.text === pipeline.text && single.text === auto.text,
      runs: speeds
    }
  } finally {
    for (const setup of setups.reverse()) await setup.stop()
    await rm(dir, { recursive: true, force: true })
  }
}
