import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createApiServer } from '../../api/server.js'
import { toolCallFormat, toolCallGrammar } from '../../api/tool-calls.js'
import { readChatTemplate, type ChatTool } from '../../engine/chat-template.js'
import { jsonSchemaGrammar } from '../../engine/json-grammar.js'
import { ACCEPT_ANY_OUTPUT, startLlamaServer, type LlamaServer } from '../../engine/llama-server.js'
import { runLoadInWorker, type LoadRun, type LoadSpec } from './api-bench-load.js'

/** Result of `mesh bench api`; the JSON field names are a public contract (issue 5). */
export interface ApiBenchResult {
  /** what the requests ask for: plain text completions, a forced tool call, or JSON by a schema */
  load: ApiBenchLoad
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

/** The kinds of load `mesh bench api` sends. */
export type ApiBenchLoad = 'text' | 'tools' | 'json-schema'

export interface ApiBenchOptions {
  modelPath: string
  /** plain text completions (default), chat with a forced tool call, or chat held to a JSON schema */
  load?: ApiBenchLoad
  /** concurrent streaming clients, and llama-server's parallel slots */
  concurrency: number
  /** requests per side */
  requests: number
  /** tokens each request may generate */
  tokens: number
}

const PROMPT = 'The quick brown fox jumps over the lazy dog.'

// What the tool and JSON-schema loads ask for: small, closed shapes, so that a model with random
// weights finishes each reply well within its tokens.
const BENCH_TOOLS: ChatTool[] = [
  { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Oslo'] }, metric: { type: 'boolean' } }, required: ['city', 'metric'], additionalProperties: false } } },
  { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { zone: { type: 'string', enum: ['UTC', 'CET'] } }, required: ['zone'], additionalProperties: false } } }
]
const BENCH_SCHEMA = { type: 'object', properties: { ok: { type: 'boolean' }, color: { type: 'string', enum: ['red', 'green', 'blue'] } }, required: ['ok', 'color'], additionalProperties: false }

/** The API request and what the API's llama-server engine sends for it: prompt tokens and grammar. */
async function requestsFor (load: ApiBenchLoad, modelPath: string, server: LlamaServer, tokens: number): Promise<{ path: string, api: object, prompt: number[], grammar?: string }> {
  const common = { model: 'bench', max_tokens: tokens, temperature: 0, stream: true, stream_options: { include_usage: true } }
  if (load === 'text') {
    const prompt = await server.tokenize(PROMPT, { special: true })
    return { path: '/v1/completions', api: { ...common, prompt }, prompt }
  }
  const template = await readChatTemplate(modelPath)
  const messages = [{ role: 'user', content: PROMPT }]
  const tools = load === 'tools' ? BENCH_TOOLS : undefined
  const prompt = await server.tokenize(template.render(messages, tools), { special: true })
  if (tools !== undefined) {
    return { path: '/v1/chat/completions', api: { ...common, messages, tools, tool_choice: 'required' }, prompt, grammar: await toolCallGrammar(tools, toolCallFormat(template.source)) }
  }
  const api = { ...common, messages, response_format: { type: 'json_schema', json_schema: { name: 'bench', schema: BENCH_SCHEMA, strict: true } } }
  return { path: '/v1/chat/completions', api, prompt, grammar: await jsonSchemaGrammar(BENCH_SCHEMA) }
}

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
      // Room in every slot for the prompt and the reply, with margin; a chat prompt carries the
      // template's turns, and with tools their descriptions.
      contextSize: options.concurrency * (options.tokens + ((options.load ?? 'text') === 'text' ? 128 : 1024)),
      listen: { socketPath }
    })
    const load = options.load ?? 'text'
    const requests = await requestsFor(load, options.modelPath, server, options.tokens)
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
      const wave = { concurrency: options.concurrency, requests: Math.ceil(options.requests / waves) }
      const viaApi: LoadSpec = {
        ...wave,
        events: 'openai',
        http: { host: '127.0.0.1', port: address.port, path: requests.path, headers: { authorization: `Bearer ${apiKey}` } },
        body: JSON.stringify(requests.api)
      }
      const direct: LoadSpec = {
        ...wave,
        events: 'llama-server',
        http: { socketPath, path: '/completion' },
        // What the API's llama-server engine sends for the same request.
        body: JSON.stringify({
          prompt: requests.prompt,
          n_predict: options.tokens,
          temperature: 0,
          top_k: 0,
          top_p: 1,
          min_p: 0,
          ...(requests.grammar !== undefined ? { grammar: requests.grammar } : {}),
          chat_parser: ACCEPT_ANY_OUTPUT,
          stream: true,
          return_tokens: true,
          cache_prompt: false
        })
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
        load,
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
