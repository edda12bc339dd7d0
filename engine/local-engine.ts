import { getLlama, LlamaGrammarEvaluationState, TokenBias, type Llama, type LlamaContext, type LlamaGrammar, type LlamaContextSequence, type LlamaModel, type Token } from 'node-llama-cpp'
import { readCpuBudget } from './cpu-budget.js'
import type { Engine, FinishReason, GeneratedPiece, GenerateInput, GenerateOptions, PieceLogprobs, TokenizeOptions, TokenLogprob } from './engine.js'
import { EngineDisposedError, EngineOptionsError, ModelFileError } from './errors.js'
import { NODE_LLAMA_OPTIONS, type NodeBindingKind } from './llama-cpp/node-binding.js'
import { defaultContextSize, inspectModelFile } from './model-file.js'
import { StopTextFilter } from './stop-text.js'

export interface LocalEngineOptions {
  /** the GGUF model to load */
  modelPath: string
  /** compute threads (default: what the CPU budget allows, see cpu-budget.ts) */
  threads?: number
  /** context length in tokens, shared evenly by the slots (default: the model's training context, at most 4096) */
  contextSize?: number
  /** generations run at once, each in a sequence of its own, evaluated in shared batches (default 1) */
  slots?: number
  /** tokens evaluated per batch while reading the prompt (default 512) */
  batchSize?: number
}

/** Validates the model file and loads it into a node-llama-cpp engine in this process. */
export async function loadLocalEngine (options: LocalEngineOptions): Promise<LocalEngine> {
  const facts = await inspectModelFile(options.modelPath)
  const contextSize = options.contextSize ?? defaultContextSize(facts)
  const threads = options.threads ?? (await readCpuBudget()).threads
  if (!Number.isSafeInteger(threads) || threads < 1) throw new EngineOptionsError(`threads must be a whole number of at least 1, got ${threads}`)
  const slots = options.slots ?? 1
  if (!Number.isSafeInteger(slots) || slots < 1 || slots > contextSize) {
    throw new EngineOptionsError(`slots must be a whole number from 1 to the context size (${contextSize}), got ${slots}`)
  }

  // 'never': take the native build `mesh setup` made (see node-binding.ts), else the prebuilt
  // binary; never compile or download while loading a model. maxThreads caps node-llama-cpp's own
  // thread accounting at our budget; its default (the core count or 4, whichever is higher)
  // oversubscribes small machines.
  const llama = await getLlama({ ...NODE_LLAMA_OPTIONS, build: 'never', maxThreads: threads })
  let model: LlamaModel | undefined
  try {
    try {
      model = await llama.loadModel({ modelPath: options.modelPath, gpuLayers: 0 })
    } catch (err) {
      throw new ModelFileError(`llama.cpp could not load the model ${options.modelPath} (${(err as Error).message}); check that it is a llama.cpp-compatible GGUF model`, { cause: err })
    }
    const context = await model.createContext({
      // node-llama-cpp's context size is each sequence's; llama-server's (and ours) is the slots' together.
      contextSize: Math.floor(contextSize / slots),
      batchSize: options.batchSize ?? Math.min(512, contextSize),
      threads: { ideal: threads, min: threads },
      sequences: slots
    })
    return new LocalEngine(options.modelPath, threads, slots, llama.buildType, facts.vocabularySize ?? 0, llama, model, context)
  } catch (err) {
    await model?.dispose()
    await llama.dispose()
    throw err
  }
}

/** Compiled grammars the local engine keeps. */
const GRAMMAR_CACHE_LIMIT = 32

/** The lowest finite 32-bit float. */
const LOWEST_FLOAT32 = -3.4028234663852886e38

/**
 * Turns generated token ids into text pieces. A character can span several byte-level tokens,
 * so each step decodes a short window and passes on only text that no longer ends in an
 * incomplete character (U+FFFD); `flush` gives what is held as it is, U+FFFD for bytes that
 * never formed a character.
 */
class TokenTextDecoder {
  readonly #tokens: Token[] = []
  #prefixOffset = 0
  #readOffset = 0

  constructor (private readonly model: LlamaModel) {}

  /** True while tokens are held: their text is not complete yet (or empty). */
  get holding (): boolean {
    return this.#readOffset < this.#tokens.length
  }

  /** Adds a token and returns the text it completes ('' while a character is incomplete). */
  push (token: Token): string {
    this.#tokens.push(token)
    const [prefix, text] = this.#window()
    if (text.length <= prefix.length || text.endsWith('\uFFFD')) return ''
    return this.#release(prefix, text)
  }

  /** The text of the held tokens, however incomplete, once no more tokens come. */
  flush (): string {
    const [prefix, text] = this.#window()
    return text.length <= prefix.length ? '' : this.#release(prefix, text)
  }

  #window (): [prefix: string, text: string] {
    return [this.model.detokenize(this.#tokens.slice(this.#prefixOffset, this.#readOffset)), this.model.detokenize(this.#tokens.slice(this.#prefixOffset))]
  }

  #release (prefix: string, text: string): string {
    this.#prefixOffset = this.#readOffset
    this.#readOffset = this.#tokens.length
    return text.slice(prefix.length)
  }
}

/**
 * node-llama-cpp running a GGUF model in this process. As many generations as it has slots run
 * at once, one per sequence of its context; others wait their turn.
 */
export class LocalEngine implements Engine {
  readonly name = 'local'
  // One sequence per slot, made once and reused: node-llama-cpp frees a disposed sequence's id
  // only some time later, so a generation could not count on getting a new one.
  readonly #free: LlamaContextSequence[]
  readonly #waiting: Array<(sequence: LlamaContextSequence) => void> = []
  readonly #idle: Array<() => void> = []
  readonly #grammars = new Map<string, Promise<LlamaGrammar>>()
  #disposed = false

  constructor (
    readonly modelPath: string,
    readonly threads: number,
    readonly slots: number,
    /** which node-llama-cpp binary runs the model: `mesh setup`'s native build or the slower prebuilt one */
    readonly binding: NodeBindingKind,
    /** tokens in the model's vocabulary */
    readonly vocabularySize: number,
    private readonly llama: Llama,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext
  ) {
    this.#free = Array.from({ length: slots }, () => context.getSequence())
  }

  /** Tokens one generation can hold: its sequence's share of the context. */
  get contextSize (): number {
    return this.context.contextSize
  }

  /** Token ids of `text` as this engine feeds it to the model (with BOS when the model asks for it). */
  tokenize (text: string, options?: TokenizeOptions): number[] {
    const tokens = this.model.tokenize(text, options?.special === true)
    const bos = this.model.tokens.bos
    return this.model.tokens.shouldPrependBosToken && bos != null ? [bos, ...tokens] : tokens
  }

  /** Text of `tokens`, as the generated pieces of those tokens spell it. */
  detokenize (tokens: readonly number[]): string {
    return this.model.detokenize(tokens as Token[])
  }

  /**
   * Token ids whose text alone is not valid UTF-8: single bytes of multi-byte characters. A model
   * with random weights strings them together into U+FFFD; benchmarks and tests that compare
   * token ids ban them, since llama-server does not report the tokens of an incomplete character.
   */
  partialCharacterTokens (): number[] {
    const partial: number[] = []
    for (let token = 0; token < this.vocabularySize; token++) {
      if (this.model.detokenize([token as Token]).includes('\uFFFD')) partial.push(token)
    }
    return partial
  }

  async * generate (input: GenerateInput, options: GenerateOptions): AsyncGenerator<GeneratedPiece, FinishReason, undefined> {
    if (this.#disposed) throw new EngineDisposedError('the local engine was disposed; load the model again to generate')
    if (!Number.isSafeInteger(options.maxTokens) || options.maxTokens < 1) {
      throw new EngineOptionsError(`maxTokens must be a whole number of at least 1, got ${options.maxTokens}`)
    }
    const prompt = typeof input === 'string' ? this.tokenize(input) : [...input.tokens]
    if (prompt.length === 0) throw new EngineOptionsError('the prompt is empty; give at least one token')
    options.signal?.throwIfAborted()

    const sequence = await this.#takeSequence()
    try {
      // A sequence keeps what it evaluated: each generation starts from nothing, so none sees another's tokens.
      await sequence.clearHistory()
      return yield * this.#run(sequence, prompt as Token[], options)
    } finally {
      this.#giveBack(sequence)
    }
  }

  async * #run (sequence: LlamaContextSequence, prompt: Token[], options: GenerateOptions): AsyncGenerator<GeneratedPiece, FinishReason, undefined> {
    const { signal } = options
    const decoder = new TokenTextDecoder(this.model)
    const stops = new StopTextFilter(options.stop ?? [])
    // Tokens of a character not complete yet: passed on with the token that completes it, so that
    // a reply ending mid-character still gets its text (U+FFFD) on its last piece.
    const held: GeneratedPiece[] = []
    const history = [...prompt]
    const topCount = options.logprobs
    const grammar = options.grammar === undefined ? undefined : new LlamaGrammarEvaluationState({ model: this.model, grammar: await this.#grammar(options.grammar) })
    const evaluation = sequence.evaluateWithMetadata(prompt, { probabilities: topCount !== undefined }, { ...this.#evaluateOptions(options, history), grammarEvaluationState: grammar })
    let finish: FinishReason = 'length'
    // Leaving this loop (finish, abort, or the consumer stopping early) ends the evaluation.
    for await (const output of evaluation) {
      signal?.throwIfAborted()
      const token = output.token
      if (options.ignoreEos !== true && this.model.isEogToken(token)) {
        finish = 'eos'
        break
      }
      history.push(token)
      const { probabilities } = output as { probabilities?: Map<Token, number> }
      const logprobs = topCount === undefined || probabilities === undefined ? undefined : this.#logprobs(token, probabilities, topCount)
      held.push({ token, text: decoder.push(token), ...(logprobs !== undefined ? { logprobs } : {}) })
      if (!decoder.holding) {
        const { pieces, stopped } = stops.pushAll(held.splice(0))
        yield * pieces
        if (stopped) return 'stop'
      }
      if (history.length - prompt.length >= options.maxTokens) break
      signal?.throwIfAborted()
    }
    if (held.length > 0) {
      held[held.length - 1].text = decoder.flush()
      const { pieces, stopped } = stops.pushAll(held)
      yield * pieces
      if (stopped) return 'stop'
    }
    yield * stops.flush()
    return finish
  }

  // node-llama-cpp's sampling options for a generation whose tokens so far (prompt included) are `history`.
  #evaluateOptions (options: GenerateOptions, history: readonly Token[]): Parameters<LlamaContextSequence['evaluate']>[1] {
    const { sampling, penalties } = options
    const bias = new TokenBias(this.model.tokenizer)
    for (const [token, logit] of options.logitBias ?? []) bias.set(token as Token, { logit })
    if (options.bannedTokens != null && options.bannedTokens.length > 0) bias.set(options.bannedTokens as Token[], 'never')
    return {
      // Neutral defaults (node-llama-cpp's are top-k 40, top-p 0.95), so that only what the caller asks for shapes the distribution.
      temperature: sampling?.temperature ?? 0,
      topK: sampling?.topK ?? 0,
      topP: sampling?.topP ?? 1,
      minP: sampling?.minP ?? 0,
      seed: sampling?.seed,
      tokenBias: (options.logitBias?.size ?? 0) > 0 || (options.bannedTokens?.length ?? 0) > 0 ? bias : undefined,
      // As llama-server counts them: every token of the prompt and the reply, in one fixed window.
      repeatPenalty: penalties === undefined || (penalties.frequency === 0 && penalties.presence === 0)
        ? undefined
        : { punishTokens: () => history as Token[], maxPunishTokens: this.context.contextSize, penalty: 1, frequencyPenalty: penalties.frequency, presencePenalty: penalties.presence },
      // Without it, node-llama-cpp ends silently at an end-of-generation token and `ignoreEos` could not work.
      yieldEogToken: true
    }
  }

  // The chosen token's log probability and the `count` most likely tokens' (the map is sorted, most likely first).
  #logprobs (token: Token, probabilities: Map<Token, number>, count: number): PieceLogprobs {
    const entry = (id: Token, probability: number): TokenLogprob => {
      const text = this.model.detokenize([id])
      // As llama-server reports an impossible token: the lowest float, since JSON has no -Infinity.
      return { token: id, text, bytes: [...Buffer.from(text, 'utf8')], logprob: probability > 0 ? Math.log(probability) : LOWEST_FLOAT32 }
    }
    const top: TokenLogprob[] = []
    for (const [id, probability] of probabilities) {
      if (top.length >= count) break
      top.push(entry(id, probability))
    }
    return { ...entry(token, probabilities.get(token) ?? 0), top }
  }

  // A compiled grammar per text: clients send the same few again and again; the oldest is forgotten first.
  async #grammar (text: string): Promise<LlamaGrammar> {
    let grammar = this.#grammars.get(text)
    if (grammar === undefined) {
      grammar = this.llama.createGrammar({ grammar: text })
      if (this.#grammars.size >= GRAMMAR_CACHE_LIMIT) this.#grammars.delete(this.#grammars.keys().next().value as string)
      this.#grammars.set(text, grammar)
      grammar.catch(() => { this.#grammars.delete(text) })
    }
    return await grammar
  }

  // One generation per sequence: the others wait for one, first come first served.
  async #takeSequence (): Promise<LlamaContextSequence> {
    return this.#free.pop() ?? await new Promise(resolve => { this.#waiting.push(resolve) })
  }

  #giveBack (sequence: LlamaContextSequence): void {
    const next = this.#waiting.shift()
    if (next !== undefined) {
      next(sequence)
      return
    }
    this.#free.push(sequence)
    if (this.#free.length === this.slots) this.#idle.splice(0).forEach(resolve => { resolve() })
  }

  async dispose (): Promise<void> {
    if (this.#disposed) return
    this.#disposed = true
    if (this.#free.length < this.slots) await new Promise<void>(resolve => { this.#idle.push(resolve) })
    await this.context.dispose()
    await this.model.dispose()
    await this.llama.dispose()
  }
}
