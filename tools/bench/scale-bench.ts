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

/** Result of `mesh bench scale`; the JSON field names are a public contract (issue 19). */
export interface ScaleBenchResult {
  workers: number
  concurrency: number
  single_node: { tokens_per_second: number }
  pipeline: { tokens_per_second: number, groups: number }
  auto: { tokens_per_second: number, groups: number }
  /** auto over pipeline */
  ratio: number
  /** the greedy completion of the prompt was the same on one node, the pipeline and the auto layout */
  identical_output: boolean
}

export interface ScaleBenchOptions {
  modelPath: string
  workers: number
  /** requests in flight at once, and each llama-server's parallel slots */
  concurrency: number
  /** tokens each request generates */
  tokens: number
  /** told each step, for the user to read */
  progress?: (line: string) => void
}

const PROMPT = 'The quick brown fox jumps over the lazy dog.'
// Measured waves of `concurrency` requests per side, after one warm-up wave.
const MEASURED_WAVES = 2
const TASKSET = '/usr/bin/taskset'

interface Side {
  tokensPerSecond: number
  groups: number
  text: string
}

/** Sends one warm-up wave (pages the model in, fills every slot), then the measured waves. */
async function measure (spec: LoadSpec): Promise<number> {
  await runLoadInWorker(spec)
  const runs: LoadRun[] = []
  for (let wave = 0; wave < MEASURED_WAVES; wave++) runs.push(await runLoadInWorker(spec))
  const errors = runs.reduce((sum, run) => sum + run.errors, 0)
  if (errors > 0) throw new Error(`${errors} requests failed; the measurement would be meaningless`)
  return runs.reduce((sum, run) => sum + run.tokens, 0) / runs.reduce((sum, run) => sum + run.seconds, 0)
}

/**
 * Runs the same load (`concurrency` greedy streaming requests of `tokens` tokens at a time) on
 * llama-server alone, then through the API of a coordinator with `workers` workers laid out as
 * one pipeline, then as the automatic layout: decode speed of all requests together. Separate
 * machines would not share a core, so each worker (its node and its rpc-server, which then
 * computes with one thread) is pinned to a core of its own, as is llama-server alone; the
 * coordinator's llama-servers compute with one thread each.
 */
export async function benchScale (options: ScaleBenchOptions): Promise<ScaleBenchResult> {
  const { modelPath, workers, concurrency, tokens } = options
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
  try {
    progress('one node: llama-server alone, one thread pinned to CPU 0')
    const socketPath = join(dir, 'llama-server.sock')
    const server = await startLlamaServer({ modelPath, threads: 1, parallel: concurrency, contextSize, listen: { socketPath } })
    let promptTokens: number[]
    let single: Side
    try {
      if (server.pid !== undefined) await promisify(execFile)(TASKSET, ['--all-tasks', '--cpu-list', '--pid', '0', String(server.pid)])
      promptTokens = await server.tokenize(PROMPT, { special: true })
      const tokensPerSecond = await measure({
        concurrency,
        requests: concurrency,
        events: 'llama-server',
        http: { socketPath, path: '/completion' },
        body: JSON.stringify({ prompt: promptTokens, n_predict: tokens, temperature: 0, top_k: 0, top_p: 1, min_p: 0, logit_bias: banned.map(token => [token, false]), stream: true, return_tokens: true, cache_prompt: false })
      })
      let text = ''
      for await (const piece of server.generate({ tokens: promptTokens }, { maxTokens: tokens, bannedTokens: banned })) text += piece.text
      single = { tokensPerSecond, groups: 1, text }
    } finally {
      await server.dispose()
    }
    progress(`one node: ${single.tokensPerSecond.toFixed(1)} tokens/s`)

    // The same data dirs for both layouts: the second load takes the weights from the workers' tensor caches.
    const layout = upLayout(join(dir, 'cluster'))
    const cluster = async (placement: Placement): Promise<Side> => {
      const port = await freePort()
      const apiBase = `http://127.0.0.1:${port}`
      const local = new LocalCluster({
        layout,
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
        const tokensPerSecond = await measure({
          concurrency,
          requests: concurrency,
          events: 'openai',
          http: { host: '127.0.0.1', port, path: '/v1/completions', headers: { authorization: `Bearer ${apiKey}` } },
          body: JSON.stringify({ ...request, stream_options: { include_usage: true } })
        })
        progress(`${placement}: ${tokensPerSecond.toFixed(1)} tokens/s`)
        return { tokensPerSecond, groups, text }
      } finally {
        await local.stop()
      }
    }
    const pipeline = await cluster('pipeline')
    const auto = await cluster('auto')
    return {
      workers,
      concurrency,
      single_node: { tokens_per_second: single.tokensPerSecond },
      pipeline: { tokens_per_second: pipeline.tokensPerSecond, groups: pipeline.groups },
      auto: { tokens_per_second: auto.tokensPerSecond, groups: auto.groups },
      ratio: auto.tokensPerSecond / pipeline.tokensPerSecond,
      identical_output: single.text === pipeline.text && single.text === auto.text
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
