import { readCpuBudget } from './cpu-budget.js'
import type { Engine } from './engine.js'
import type { NodeBindingKind } from './llama-cpp/node-binding.js'
import { startLlamaServer } from './llama-server.js'
import { loadLocalEngine } from './local-engine.js'

/** Tokens and decode speed of one greedy generation. */
export interface DecodeRun {
  tokens: number[]
  /** generated tokens per second after the first one: decode speed, without prompt reading */
  tokensPerSecond: number
}

/** Result of `mesh bench local`; the JSON field names are a public contract. */
export interface LocalBenchResult {
  engine: 'local'
  model: string
  threads: number
  tokens_per_second: number
  baseline: { name: 'llama-server', tokens_per_second: number }
  ratio: number
  identical_output: boolean
}

/** The measured result and what was measured with, beyond the JSON contract. */
export interface LocalBench {
  result: LocalBenchResult
  /** which node-llama-cpp binary the local engine ran on */
  binding: NodeBindingKind
}

export interface LocalBenchOptions {
  modelPath: string
  /** tokens to generate per measured run (at least 2) */
  tokens: number
  /** measured runs per engine; the median speed is reported (default 3) */
  runs?: number
  prompt?: string
}

const BENCH_PROMPT = 'The quick brown fox jumps over the lazy dog.'
/** Tokens of the warm-up generation that pages the model in before anything is timed. */
export const WARMUP_TOKENS = 8

/** Generates `tokens` greedy tokens (end-of-generation ignored) and times the decode. */
export async function measureDecode (engine: Engine, prompt: string, tokens: number, bannedTokens: readonly number[] = []): Promise<DecodeRun> {
  const generated: number[] = []
  let first = 0
  let last = 0
  for await (const piece of engine.generate(prompt, { maxTokens: tokens, ignoreEos: true, bannedTokens })) {
    last = performance.now()
    if (generated.length === 0) first = last
    generated.push(piece.token)
  }
  const seconds = (last - first) / 1000
  return { tokens: generated, tokensPerSecond: seconds > 0 ? (generated.length - 1) / seconds : 0 }
}

/** The middle of `values` (the mean of the two middle ones for an even count). */
export function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

// One warm-up generation pages the model in and starts the thread pool, then `runs` measured ones.
async function measureEngine (engine: Engine, prompt: string, tokens: number, runs: number, bannedTokens: readonly number[]): Promise<DecodeRun> {
  await measureDecode(engine, prompt, WARMUP_TOKENS, bannedTokens)
  const results: DecodeRun[] = []
  for (let i = 0; i < runs; i++) results.push(await measureDecode(engine, prompt, tokens, bannedTokens))
  return { tokens: results[0].tokens, tokensPerSecond: median(results.map(r => r.tokensPerSecond)) }
}

/**
 * Measures the local engine against llama-server on the same model, prompt and thread count
 * (the CPU budget's), one engine at a time so that they never compete for cores.
 */
export async function benchLocal (options: LocalBenchOptions): Promise<LocalBench> {
  const { threads } = await readCpuBudget()
  const prompt = options.prompt ?? BENCH_PROMPT
  const runs = options.runs ?? 3

  const local = await loadLocalEngine({ modelPath: options.modelPath, threads })
  let localRun: DecodeRun
  // A random-weight model emits lone byte tokens, whose ids llama-server does not report (only
  // the token that completes a character): both engines are kept to tokens that are whole text.
  let bannedTokens: number[]
  try {
    bannedTokens = local.partialCharacterTokens()
    localRun = await measureEngine(local, prompt, options.tokens, runs, bannedTokens)
  } finally {
    await local.dispose()
  }

  const server = await startLlamaServer({ modelPath: options.modelPath, threads })
  let serverRun: DecodeRun
  try {
    serverRun = await measureEngine(server, prompt, options.tokens, runs, bannedTokens)
  } finally {
    await server.dispose()
  }

  const result: LocalBenchResult = {
    engine: 'local',
    model: options.modelPath,
    threads,
    tokens_per_second: localRun.tokensPerSecond,
    baseline: { name: 'llama-server', tokens_per_second: serverRun.tokensPerSecond },
    ratio: localRun.tokensPerSecond / serverRun.tokensPerSecond,
    identical_output: localRun.tokens.length === serverRun.tokens.length && localRun.tokens.every((t, i) => t === serverRun.tokens[i])
  }
  return { result, binding: local.binding }
}
