import { lstat, unlink } from 'node:fs/promises'
import { request, type IncomingMessage, type RequestOptions } from 'node:http'
import { connect } from 'node:net'
import { createInterface } from 'node:readline'
import { readCpuBudget } from './cpu-budget.js'
import { SupervisedProcess } from './child-process.js'
import { UNREPORTED_TOKEN, type Engine, type FinishReason, type GeneratedPiece, type GenerateInput, type GenerateOptions, type PieceLogprobs, type TokenizeOptions, type TokenLogprob } from './engine.js'
import { EngineDisposedError, EngineLostError, EngineOptionsError, LlamaServerRequestError } from './errors.js'
import { findLlamaCppTools, llamaCppToolEnv } from './llama-cpp/tools.js'
import { defaultContextSize, inspectModelFile } from './model-file.js'

/** Where llama-server listens: a UNIX socket, or 127.0.0.1 on a port the kernel picks. */
export type LlamaServerListen = { socketPath: string } | { host: '127.0.0.1' }

export interface LlamaServerOptions {
  /** the GGUF model to serve */
  modelPath: string
  /** llama-server executable (default: the one `mesh setup` built) */
  llamaServerPath?: string
  /** compute threads, for generation (-t) and prompt reading (-tb) (default: the CPU budget's) */
  threads?: number
  /** context length in tokens (default: the model's training context, at most 4096) */
  contextSize?: number
  /** concurrent request slots (default 1) */
  parallel?: number
  /** where to listen (default: 127.0.0.1 and a free port) */
  listen?: LlamaServerListen
  /** more llama-server arguments, e.g. `--rpc` and layer placement for the cluster engine */
  extraArgs?: readonly string[]
  /** give up if the model is not loaded after this many milliseconds (default 120 s) */
  readyTimeoutMs?: number
  /** aborting it stops the start (and the child) */
  signal?: AbortSignal
}

const LISTENING_LINE = /listening on (unix:\/\/\S+|https?:\/\/\S+)/

/** How often /health is asked while llama-server loads its model. */
const HEALTH_POLL_INTERVAL_MS = 20

/** Starts llama-server with a model and waits until /health says the model is loaded. */
export async function startLlamaServer (options: LlamaServerOptions): Promise<LlamaServer> {
  const facts = await inspectModelFile(options.modelPath) // a clear error for a bad model file, before a child starts
  const listen = options.listen ?? { host: '127.0.0.1' }
  if ('socketPath' in listen && !listen.socketPath.endsWith('.sock')) {
    throw new EngineOptionsError(`llama-server only listens on a UNIX socket whose path ends in ".sock", got ${listen.socketPath}`)
  }
  if ('socketPath' in listen) await removeStaleSocket(listen.socketPath)
  const llamaServerPath = options.llamaServerPath ?? (await findLlamaCppTools()).llamaServer
  const threads = options.threads ?? (await readCpuBudget()).threads
  const contextSize = options.contextSize ?? defaultContextSize(facts)
  const parallel = options.parallel ?? 1
  const args = [
    '--model', options.modelPath,
    '--threads', String(threads),
    '--threads-batch', String(threads),
    '--ctx-size', String(contextSize),
    '--parallel', String(parallel),
    ...('socketPath' in listen ? ['--host', listen.socketPath] : ['--host', listen.host, '--port', '0']),
    '--no-webui',
    ...(options.extraArgs ?? [])
  ]
  const child = SupervisedProcess.spawn({ name: 'llama-server', command: llamaServerPath, args, env: llamaCppToolEnv() })
  try {
    const wait = { timeoutMs: options.readyTimeoutMs ?? 120_000, signal: options.signal }
    const [, address] = await child.waitForLine(LISTENING_LINE, wait)
    const target: RequestOptions = address.startsWith('unix://')
      ? { socketPath: address.slice('unix://'.length) }
      : { host: new URL(address).hostname, port: Number(new URL(address).port) }
    // llama-server divides its context evenly between the slots.
    const slotContext = Math.floor(contextSize / parallel)
    const server = new LlamaServer(child, target, options.modelPath, threads, 'socketPath' in listen ? listen.socketPath : undefined, slotContext, parallel)
    // A /health request on the local socket costs well under a millisecond; a short interval
    // keeps a reload after a failure from waiting on the poll.
    await child.waitUntil(async () => await server.isHealthy(), { ...wait, intervalMs: HEALTH_POLL_INTERVAL_MS })
    return server
  } catch (err) {
    await child.stop()
    throw err
  }
}

/**
 * A chat-output parser (a serialized PEG arena) that accepts any text. llama-server parses every
 * completion's text as a chat message, and its default parser fails on invalid UTF-8 (a lone byte
 * of a multi-byte character, normal model output), failing the request; /completion's raw text
 * does not need that parse, so it is given a parser that matches without reading anything.
 */
export const ACCEPT_ANY_OUTPUT = JSON.stringify({ parsers: [{ type: 'epsilon' }], rules: {}, root: 0 })

/** A token's probability as llama-server reports it (n_probs, before sampling). */
interface ServerTokenProbability {
  id: number
  token: string
  bytes: number[]
  logprob: number
}

/** One event of llama-server's streamed /completion answer. */
interface CompletionChunk {
  content?: string
  tokens?: number[]
  stop?: boolean
  stop_type?: 'none' | 'eos' | 'limit' | 'word'
  /** tokens generated so far, also those it held back (an incomplete character) */
  tokens_predicted?: number
  completion_probabilities?: Array<ServerTokenProbability & { top_logprobs: ServerTokenProbability[] }>
  error?: { message?: string }
}

// llama-server's log probabilities of one token, in the engine's shape; `count` top tokens.
function pieceLogprobs (reported: (ServerTokenProbability & { top_logprobs: ServerTokenProbability[] }) | undefined, count: number): PieceLogprobs | undefined {
  if (reported === undefined) return undefined
  const entry = (p: ServerTokenProbability): TokenLogprob => ({ token: p.id, text: p.token, bytes: p.bytes, logprob: p.logprob })
  return { ...entry(reported), top: reported.top_logprobs.slice(0, count).map(entry) }
}

/** A running llama-server child; generates through its /completion endpoint. */
export class LlamaServer implements Engine {
  readonly name = 'llama-server'
  #stopped = false

  constructor (
    private readonly child: SupervisedProcess,
    private readonly target: RequestOptions,
    readonly modelPath: string,
    readonly threads: number,
    private readonly socketPath: string | undefined,
    /** tokens one request can hold: llama-server's context divided by its slots */
    readonly contextSize: number,
    /** llama-server's `--parallel` */
    readonly slots: number
  ) {}

  /** http://127.0.0.1:PORT when it listens on TCP (its own API, e.g. to compare answers with), else undefined. */
  get httpUrl (): string | undefined {
    return this.target.port === undefined ? undefined : `http://${this.target.host as string}:${this.target.port}`
  }

  /** Process id of the llama-server child. */
  get pid (): number | undefined {
    return this.child.pid
  }

  /** Resolves when the child exits, for whoever must react to a crash. */
  get exited (): SupervisedProcess['exited'] {
    return this.child.exited
  }

  /** True when llama-server answers /health with 200 (model loaded). */
  async isHealthy (): Promise<boolean> {
    try {
      const response = await this.#send('GET', '/health')
      response.resume()
      return response.statusCode === 200
    } catch {
      return false
    }
  }

  /** Token ids of `text`, as llama-server's /tokenize reads it. */
  async tokenize (text: string, options?: TokenizeOptions): Promise<number[]> {
    if (this.#stopped) throw new EngineDisposedError('this llama-server was stopped; start it again to tokenize')
    const response = await this.#send('POST', '/tokenize', { content: text, add_special: true, parse_special: options?.special === true })
    const answer = await readAll(response)
    if (response.statusCode !== 200) {
      throw new LlamaServerRequestError(`llama-server refused to tokenize (HTTP ${response.statusCode}): ${answer.slice(0, 300)}`, response.statusCode)
    }
    return (JSON.parse(answer) as { tokens: number[] }).tokens
  }

  async * generate (input: GenerateInput, options: GenerateOptions): AsyncGenerator<GeneratedPiece, FinishReason, undefined> {
    if (this.#stopped) throw new EngineDisposedError('this llama-server was stopped; start it again to generate')
    if (!Number.isSafeInteger(options.maxTokens) || options.maxTokens < 1) {
      throw new EngineOptionsError(`maxTokens must be a whole number of at least 1, got ${options.maxTokens}`)
    }
    const { sampling } = options
    const resumeAfter = typeof input === 'string' ? 0 : options.resumeAfter ?? 0
    const logitBias: Array<[number, number | false]> = [
      ...options.logitBias ?? [],
      ...(options.bannedTokens ?? []).map((token): [number, false] => [token, false])
    ]
    if (resumeAfter > 0) await this.#replay((input as { tokens: readonly number[] }).tokens, resumeAfter, logitBias, options.signal)
    const body = {
      prompt: typeof input === 'string' ? input : [...input.tokens],
      n_predict: options.maxTokens,
      // Neutral defaults, so that only what the caller asks for shapes the distribution.
      temperature: sampling?.temperature ?? 0,
      top_k: sampling?.topK ?? 0,
      top_p: sampling?.topP ?? 1,
      min_p: sampling?.minP ?? 0,
      ...(sampling?.seed !== undefined ? { seed: sampling.seed } : {}),
      stop: options.stop ?? [],
      logit_bias: logitBias,
      // OpenAI's penalties count every token so far, as the local engine does: the whole context.
      ...(options.penalties !== undefined ? { frequency_penalty: options.penalties.frequency, presence_penalty: options.penalties.presence, repeat_penalty: 1, repeat_last_n: this.contextSize } : {}),
      // The chosen token's probability comes with the top ones: ask for at least one.
      ...(options.logprobs !== undefined ? { n_probs: Math.max(1, options.logprobs), post_sampling_probs: false } : {}),
      ...(options.grammar !== undefined ? { grammar: options.grammar } : {}),
      ignore_eos: options.ignoreEos === true,
      chat_parser: ACCEPT_ANY_OUTPUT,
      stream: true,
      return_tokens: true,
      // After a replay the slot holds all but the last input token, evaluated as generating did.
      cache_prompt: resumeAfter > 0
    }
    const response = await this.#send('POST', '/completion', body, options.signal)
    if (response.statusCode !== 200) {
      const text = await readAll(response)
      throw new LlamaServerRequestError(`llama-server refused the completion (HTTP ${response.statusCode}): ${text.slice(0, 300)}`, response.statusCode)
    }
    try {
      // Tokens llama-server reported so far, also those it held back without saying which.
      let reported = 0
      // A piece without text, held until the next event says whether it was the end-of-generation token.
      let textless: GeneratedPiece | undefined
      for await (const chunk of serverSentEvents(response)) {
        if (chunk.error != null) throw new LlamaServerRequestError(`llama-server failed during a completion: ${chunk.error.message ?? 'no reason given'}`)
        const tokens = chunk.tokens ?? []
        // llama-server keeps the tokens of an incomplete character to itself and reports only the
        // one that completes it (their text comes with it); tokens_predicted still counts them.
        // A reply that ends mid-character never reports them at all: their bytes become U+FFFD.
        const hidden = Math.max(0, (chunk.tokens_predicted ?? 0) - reported - tokens.length)
        const unfinished = chunk.stop === true && hidden > 0 && tokens.length === 0
        if (hidden > 0 && textless !== undefined) yield textless
        if (hidden > 0) textless = undefined
        for (let i = 0; i < hidden; i++) {
          options.signal?.throwIfAborted()
          yield { token: UNREPORTED_TOKEN, text: unfinished && i === hidden - 1 ? '\uFFFD' : '' }
        }
        const probabilities = chunk.completion_probabilities ?? []
        for (let i = 0; i < tokens.length; i++) {
          // Events already buffered when the caller aborted must not reach it.
          options.signal?.throwIfAborted()
          if (textless !== undefined) yield textless
          const logprobs = options.logprobs === undefined ? undefined : pieceLogprobs(probabilities.find(p => p.id === tokens[i]), options.logprobs)
          const piece = { token: tokens[i], text: i === tokens.length - 1 ? chunk.content ?? '' : '', ...(logprobs !== undefined ? { logprobs } : {}) }
          textless = piece.text === '' ? piece : undefined
          if (textless === undefined) yield piece
        }
        reported += hidden + tokens.length
        if (chunk.stop === true) {
          // llama-server reports the end-of-generation token it stopped at, which the reply does not count.
          if (textless !== undefined && chunk.stop_type !== 'eos') yield textless
          return chunk.stop_type === 'eos' ? 'eos' : chunk.stop_type === 'word' ? 'stop' : 'length'
        }
      }
    } catch (err) {
      options.signal?.throwIfAborted()
      if (err instanceof LlamaServerRequestError) throw err
      throw new EngineLostError(`the connection to llama-server broke during a completion: ${(err as Error).message}`)
    } finally {
      response.destroy()
    }
    options.signal?.throwIfAborted()
    throw new EngineLostError('llama-server ended a completion without its final event')
  }

  /**
   * Rebuilds a slot's cache for `tokens`, whose last `generated` were generated, the way the
   * generation built it: the prompt in one batch, then each generated token alone. Evaluating
   * them in one batch would round differently, and greedy decoding could pick other tokens.
   * Leaves the last token out: the completion that follows evaluates it and samples from it.
   */
  async #replay (tokens: readonly number[], generated: number, logitBias: Array<[number, number | false]>, signal: AbortSignal | undefined): Promise<void> {
    const promptLength = tokens.length - generated
    for (let end = promptLength; end < tokens.length; end++) {
      // One sampled token each (discarded): it makes llama-server evaluate the new token and stop.
      const body = { prompt: tokens.slice(0, end), n_predict: 1, temperature: 0, logit_bias: logitBias, chat_parser: ACCEPT_ANY_OUTPUT, cache_prompt: end > promptLength, stream: false }
      const response = await this.#send('POST', '/completion', body, signal)
      const answer = await readAll(response).catch((err: Error) => {
        signal?.throwIfAborted()
        throw new EngineLostError(`the connection to llama-server broke while resuming a generation: ${err.message}`)
      })
      if (response.statusCode !== 200) {
        throw new LlamaServerRequestError(`llama-server refused to resume a generation (HTTP ${response.statusCode}): ${answer.slice(0, 300)}`, response.statusCode)
      }
    }
  }

  async #send (method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<IncomingMessage> {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    return await new Promise((resolve, reject) => {
      const req = request({
        ...this.target,
        // One connection per request: llama-server closes idle keep-alive connections on its own
        // schedule, and a pooled socket it has closed fails the next request with "socket hang up".
        agent: false,
        method,
        path,
        signal,
        headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }
      }, resolve)
      req.once('error', err => {
        reject(signal?.aborted === true ? signal.reason : new EngineLostError(`cannot reach llama-server: ${err.message}`))
      })
      req.end(payload)
    })
  }

  /** Stops the child (SIGTERM, then SIGKILL after 5 s). */
  async dispose (): Promise<void> {
    this.#stopped = true
    await this.child.stop()
    // After a SIGKILL the socket file stays behind and would block the next start.
    if (this.socketPath !== undefined) await unlink(this.socketPath).catch(() => {})
  }
}

/**
 * Removes a socket file that no process listens on any more (left by a killed llama-server):
 * llama-server cannot bind a path that exists. A live socket or another kind of file is an error.
 */
async function removeStaleSocket (path: string): Promise<void> {
  let isSocket: boolean
  try {
    isSocket = (await lstat(path)).isSocket()
  } catch {
    return // nothing there
  }
  if (!isSocket) throw new EngineOptionsError(`${path} exists and is not a socket; choose another socket path for llama-server`)
  const live = await new Promise<boolean>(resolve => {
    const probe = connect(path)
    probe.once('connect', () => { probe.destroy(); resolve(true) })
    probe.once('error', () => { resolve(false) })
  })
  if (live) throw new EngineOptionsError(`another process already listens on ${path}; stop it or choose another socket path`)
  await unlink(path)
}

async function readAll (response: IncomingMessage): Promise<string> {
  let text = ''
  for await (const chunk of response.setEncoding('utf8')) text += chunk as string
  return text
}

async function * serverSentEvents (response: IncomingMessage): AsyncGenerator<CompletionChunk> {
  for await (const line of createInterface({ input: response, crlfDelay: Infinity })) {
    if (line.startsWith('data: ')) yield JSON.parse(line.slice('data: '.length)) as CompletionChunk
  }
}
