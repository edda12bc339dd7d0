/**
 * The one interface the API talks to. Two implementations: the local engine (node-llama-cpp in
 * this process) and the cluster engine (a llama-server child with RPC workers).
 */

/** What to continue: text (tokenized by the engine, BOS added as the model asks) or token ids as they are. */
export type GenerateInput = string | { tokens: readonly number[] }

/** How text becomes token ids. */
export interface TokenizeOptions {
  /** read control-token texts such as `<|im_start|>` as those tokens (default false: as plain text) */
  special?: boolean
}

/** Random sampling; leave it out for greedy decoding (always the most likely token). */
export interface SamplingOptions {
  /** softmax temperature; 0 means greedy */
  temperature: number
  /** keep only the K most likely tokens (default: no limit) */
  topK?: number
  /** keep the smallest set of tokens whose probabilities add up to P (default 1: no limit) */
  topP?: number
  /** drop tokens less likely than minP times the most likely one (default 0: no limit) */
  minP?: number
  /** seed of the sampler, for repeatable output */
  seed?: number
}

export interface GenerateOptions {
  /** generate at most this many tokens */
  maxTokens: number
  /** sampling settings; greedy when undefined */
  sampling?: SamplingOptions
  /** end when the text contains one of these; the stop text itself is not returned */
  stop?: readonly string[]
  /** token ids never to generate (OpenAI's logit_bias of -100) */
  bannedTokens?: readonly number[]
  /** keep going past end-of-generation tokens (benchmarks need an exact token count) */
  ignoreEos?: boolean
  /** aborting it ends the generation promptly; the generator then throws the signal's reason */
  signal?: AbortSignal
}

/** One generated token and the text it adds (empty while a multi-byte character is incomplete). */
export interface GeneratedPiece {
  token: number
  text: string
}

/** Why a generation ended: `maxTokens` reached, a stop text found, or an end-of-generation token. */
export type FinishReason = 'length' | 'stop' | 'eos'

/** An engine with its model loaded, ready to generate. */
export interface Engine {
  /** implementation name, e.g. "local" or "llama-server" */
  readonly name: string
  /** the GGUF file the engine runs */
  readonly modelPath: string
  /** compute threads the engine uses */
  readonly threads: number
  /** tokens one generation can hold: its prompt plus everything it generates */
  readonly contextSize: number
  /** Token ids of `text` as the engine feeds it to the model, BOS first when the model asks for it. */
  tokenize: (text: string, options?: TokenizeOptions) => number[] | Promise<number[]>
  /** Streams the continuation of `input`; the generator's return value says why it ended. */
  generate: (input: GenerateInput, options: GenerateOptions) => AsyncGenerator<GeneratedPiece, FinishReason, undefined>
  /** Frees the model and everything it holds; the engine cannot be used afterwards. */
  dispose: () => Promise<void>
}
