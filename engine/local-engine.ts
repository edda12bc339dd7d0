import { getLlama, TokenBias, type Llama, type LlamaContext, type LlamaContextSequence, type LlamaModel, type Token } from 'node-llama-cpp'
import { readCpuBudget } from './cpu-budget.js'
import type { Engine, FinishReason, GeneratedPiece, GenerateInput, GenerateOptions, TokenizeOptions } from './engine.js'
import { EngineDisposedError, EngineOptionsError, ModelFileError } from './errors.js'
import { NODE_LLAMA_OPTIONS, type NodeBindingKind } from './llama-cpp/node-binding.js'
import { defaultContextSize, inspectModelFile } from './model-file.js'
import { StopTextFilter } from './stop-text.js'

export interface LocalEngineOptions {
  /** the GGUF model to load */
  modelPath: string
  /** compute threads (default: what the CPU budget allows, see cpu-budget.ts) */
  threads?: number
  /** context length in tokens (default: the model's training context, at most 4096) */
  contextSize?: number
  /** tokens evaluated per batch while reading the prompt (default 512) */
  batchSize?: number
}

/** Validates the model file and loads it into a node-llama-cpp engine in this process. */
export async function loadLocalEngine (options: LocalEngineOptions): Promise<LocalEngine> {
  const facts = await inspectModelFile(options.modelPath)
  const contextSize = options.contextSize ?? defaultContextSize(facts)
  const threads = options.threads ?? (await readCpuBudget()).threads
  if (!Number.isSafeInteger(threads) || threads < 1) throw new EngineOptionsError(`threads must be a whole number of at least 1, got ${threads}`)

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
      contextSize,
      batchSize: options.batchSize ?? Math.min(512, contextSize),
      threads: { ideal: threads, min: threads },
      sequences: 1
    })
    return new LocalEngine(options.modelPath, threads, llama.buildType, facts.vocabularySize ?? 0, llama, model, context)
  } catch (err) {
    await model?.dispose()
    await llama.dispose()
    throw err
  }
}

/**
 * Turns generated token ids into text pieces. A character can span several byte-level tokens,
 * so each step decodes a short window and passes on only text that no longer ends in an
 * incomplete character (U+FFFD).
 */
class TokenTextDecoder {
  readonly #tokens: Token[] = []
  #prefixOffset = 0
  #readOffset = 0

  constructor (private readonly model: LlamaModel) {}

  /** Adds a token and returns the text it completes ('' while a character is incomplete). */
  push (token: Token): string {
    this.#tokens.push(token)
    const prefix = this.model.detokenize(this.#tokens.slice(this.#prefixOffset, this.#readOffset))
    const text = this.model.detokenize(this.#tokens.slice(this.#prefixOffset))
    if (text.length <= prefix.length || text.endsWith('\uFFFD')) return ''
    this.#prefixOffset = this.#readOffset
    this.#readOffset = this.#tokens.length
    return text.slice(prefix.length)
  }
}

/** node-llama-cpp running a GGUF model in this process. One generation runs at a time; others wait. */
export class LocalEngine implements Engine {
  readonly name = 'local'
  /** its context has a single sequence */
  readonly slots = 1
  #queue: Promise<void> = Promise.resolve()
  #disposed = false

  constructor (
    readonly modelPath: string,
    readonly threads: number,
    /** which node-llama-cpp binary runs the model: `mesh setup`'s native build or the slower prebuilt one */
    readonly binding: NodeBindingKind,
    /** tokens in the model's vocabulary */
    readonly vocabularySize: number,
    private readonly llama: Llama,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext
  ) {}

  /** Tokens one generation can hold (the context has a single sequence). */
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
   * with random weights strings them together into invalid text, which llama-server refuses.
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

    const release = await this.#acquire()
    try {
      const sequence = this.context.getSequence()
      try {
        return yield * this.#run(sequence, prompt as Token[], options)
      } finally {
        sequence.dispose()
      }
    } finally {
      release()
    }
  }

  async * #run (sequence: LlamaContextSequence, prompt: Token[], options: GenerateOptions): AsyncGenerator<GeneratedPiece, FinishReason, undefined> {
    const { sampling, signal } = options
    const decoder = new TokenTextDecoder(this.model)
    const stops = new StopTextFilter(options.stop ?? [])
    let generated = 0
    const evaluation = sequence.evaluate(prompt, {
      // Neutral defaults (node-llama-cpp's are top-k 40, top-p 0.95), so that only what the caller asks for shapes the distribution.
      temperature: sampling?.temperature ?? 0,
      topK: sampling?.topK ?? 0,
      topP: sampling?.topP ?? 1,
      minP: sampling?.minP ?? 0,
      seed: sampling?.seed,
      tokenBias: options.bannedTokens != null && options.bannedTokens.length > 0
        ? new TokenBias(this.model.tokenizer).set(options.bannedTokens as Token[], 'never')
        : undefined,
      // Without it, node-llama-cpp ends silently at an end-of-generation token and `ignoreEos` could not work.
      yieldEogToken: true
    })
    // Leaving this loop (finish, abort, or the consumer stopping early) ends the evaluation.
    for await (const token of evaluation) {
      signal?.throwIfAborted()
      if (options.ignoreEos !== true && this.model.isEogToken(token)) {
        yield * stops.flush()
        return 'eos'
      }
      generated++
      const { pieces, stopped } = stops.push({ token, text: decoder.push(token) })
      yield * pieces
      if (stopped) return 'stop'
      if (generated >= options.maxTokens) break
      signal?.throwIfAborted()
    }
    yield * stops.flush()
    return 'length'
  }

  // Chains generations: the context has one sequence, so they must not interleave.
  async #acquire (): Promise<() => void> {
    let release!: () => void
    const previous = this.#queue
    this.#queue = new Promise(resolve => { release = resolve })
    await previous
    return release
  }

  async dispose (): Promise<void> {
    if (this.#disposed) return
    this.#disposed = true
    await this.#queue
    await this.context.dispose()
    await this.model.dispose()
    await this.llama.dispose()
  }
}
