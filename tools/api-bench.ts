import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createApiServer } from '../api/server.js'
import { startLlamaServer, type LlamaServer } from '../engine/llama-server.js'
import { runLoadInWorker, type LoadRun, type LoadSpec } from './api-bench-load.js'

/** Result of `mesh bench api`; the JSON field names are a public contract (issue 5). */
export interface ApiBenchResult {
  concurrency: number
  tokens_per_second: number
  baseline: { name: 'llama-server direct', tokens_per_second: number }
  ratio: number
  ttft_p50_ms: number
  ttft_p99_ms: number
  baseline_ttft_p50_ms: number
  baseline_ttft_p99_ms: number
  /** API requests that failed: an HTTP error, an error event, or no tokens */
  errors: number
}

export interface ApiBenchOptions {
  modelPath: string
  /** concurrent streaming clients, and llama-server's parallel slots */
  concurrency: number
  /** requests per side */
  requests: number
  /** tokens each request may generate */
  tokens: number
}

const PROMPT = 'The quick brown fox jumps over the lazy dog.'

// The sides take turns, one wave of `concurrency` requests each, the first side alternating
// from wave to wave, so that a change in the machine's load hits both alike; at least two
// waves per side, so that each side goes first once.
const MIN_WAVES = 2

/** The p-th percentile (nearest rank) of `values`, 0 < p <= 100. */
function percentile (values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0
}

/** Several loads of one side as one: tokens over the time they took together. */
function combine (runs: readonly LoadRun[]): LoadRun {
  return {
    tokens: runs.reduce((sum, run) => sum + run.tokens, 0),
    seconds: runs.reduce((sum, run) => sum + run.seconds, 0),
    ttftMs: runs.flatMap(run => run.ttftMs),
    errors: runs.reduce((sum, run) => sum + run.errors, 0)
  }
}

/**
 * Drives the API over llama-server (`concurrency` parallel slots) with `concurrency` streaming
 * clients, and sends the same load straight to the same llama-server's UNIX socket: same token
 * prompt, same greedy sampling, same token limit. Speeds count the tokens actually generated.
 */
export async function benchApi (options: ApiBenchOptions): Promise<ApiBenchResult> {
  const dir = await mkdtemp(join(tmpdir(), 'llmesh-bench-api-'))
  const socketPath = join(dir, 'llama-server.sock')
  let server: LlamaServer | undefined
  try {
    server = await startLlamaServer({
      modelPath: options.modelPath,
      parallel: options.concurrency,
      // One compute thread leaves a core to the API and the clients: a llama-server that competes
      // with them for every core spins in its thread barriers and measures the scheduler instead.
      threads: 1,
      // Room in every slot for the prompt and the reply, with margin.
      contextSize: options.concurrency * (options.tokens + 128),
      listen: { socketPath }
    })
    const promptTokens = await server.tokenize(PROMPT, { special: true })
    const apiKey = randomBytes(16).toString('hex')
    const api = await createApiServer({
      engine: server,
      apiKey,
      modelName: 'bench',
      maxQueue: options.requests,
      rateLimits: { perKey: 0, perIp: 0, windowMs: 60_000 }
    })
    await api.listen({ host: '127.0.0.1', port: 0 })
    try {
      const address = api.server.address()
      if (address === null || typeof address === 'string') throw new Error('the API did not listen on TCP')
      const waves = Math.max(MIN_WAVES, Math.ceil(options.requests / options.concurrency))
      const load = { concurrency: options.concurrency, requests: Math.ceil(options.requests / waves) }
      const viaApi: LoadSpec = {
        ...load,
        events: 'openai',
        http: { host: '127.0.0.1', port: address.port, path: '/v1/completions', headers: { authorization: `Bearer ${apiKey}` } },
        body: JSON.stringify({ model: 'bench', prompt: promptTokens, max_tokens: options.tokens, temperature: 0, stream: true, stream_options: { include_usage: true } })
      }
      const direct: LoadSpec = {
        ...load,
        events: 'llama-server',
        http: { socketPath, path: '/completion' },
        // What the API's llama-server engine sends for the same request.
        body: JSON.stringify({ prompt: promptTokens, n_predict: options.tokens, temperature: 0, top_k: 0, top_p: 1, min_p: 0, stream: true, return_tokens: true, cache_prompt: false })
      }

      // A warm-up load per side pages the model in and fills every slot once.
      await runLoadInWorker({ ...direct, requests: options.concurrency })
      await runLoadInWorker({ ...viaApi, requests: options.concurrency })
      const baselineRuns: LoadRun[] = []
      const measuredRuns: LoadRun[] = []
      for (let wave = 0; wave < waves; wave++) {
        if (wave % 2 === 0) baselineRuns.push(await runLoadInWorker(direct))
        measuredRuns.push(await runLoadInWorker(viaApi))
        if (wave % 2 === 1) baselineRuns.push(await runLoadInWorker(direct))
      }
      const baseline = combine(baselineRuns)
      const measured = combine(measuredRuns)
      if (baseline.errors > 0) throw new Error(`${baseline.errors} requests straight to llama-server failed; the comparison would be meaningless`)
      const tokensPerSecond = measured.tokens / measured.seconds
      const baselineTokensPerSecond = baseline.tokens / baseline.seconds
      return {
        concurrency: options.concurrency,
        tokens_per_second: tokensPerSecond,
        baseline: { name: 'llama-server direct', tokens_per_second: baselineTokensPerSecond },
        ratio: tokensPerSecond / baselineTokensPerSecond,
        ttft_p50_ms: percentile(measured.ttftMs, 50),
        ttft_p99_ms: percentile(measured.ttftMs, 99),
        baseline_ttft_p50_ms: percentile(baseline.ttftMs, 50),
        baseline_ttft_p99_ms: percentile(baseline.ttftMs, 99),
        errors: measured.errors
      }
    } finally {
      await api.close()
    }
  } finally {
    await server?.dispose()
    await rm(dir, { recursive: true, force: true })
  }
}
