import type { Engine, FinishReason, GeneratedPiece, GenerateOptions } from '../engine/engine.js'
import { InvalidRequestError, UnsupportedRequestError } from './errors.js'

/** The sampling fields that chat and text completion requests share. */
export interface SamplingParams {
  max_tokens?: number | null
  temperature?: number | null
  top_p?: number | null
  seed?: number | null
  stop?: string | string[] | null
  n?: number | null
  logit_bias?: Record<string, number> | null
  presence_penalty?: number | null
  frequency_penalty?: number | null
}

/** OpenAI's finish reasons: an end-of-generation token and a stop text both count as 'stop'. */
export type OpenAiFinishReason = 'stop' | 'length'

/** Token counts of one request, as OpenAI's `usage` reports them. */
export interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

// OpenAI's sampling default: without `temperature` the reply is sampled, not greedy.
const DEFAULT_TEMPERATURE = 1

/** Turns OpenAI request fields into engine options; throws UnsupportedRequestError (422) for what the engines cannot do. */
export function generateOptions (params: SamplingParams, maxTokens: number): Omit<GenerateOptions, 'signal'> {
  if (params.n != null && params.n !== 1) throw new UnsupportedRequestError(`n must be 1: llmesh returns one choice per request, got ${params.n}`, 'n', 'unsupported_value')
  for (const field of ['presence_penalty', 'frequency_penalty'] as const) {
    const value = params[field]
    if (value != null && value !== 0) throw new UnsupportedRequestError(`${field} is not supported; leave it out or send 0, got ${value}`, field, 'unsupported_value')
  }
  const temperature = params.temperature ?? DEFAULT_TEMPERATURE
  return {
    maxTokens,
    sampling: temperature === 0 ? undefined : { temperature, topP: params.top_p ?? undefined, seed: params.seed ?? undefined },
    stop: typeof params.stop === 'string' ? [params.stop] : params.stop ?? [],
    bannedTokens: bannedTokens(params.logit_bias ?? {})
  }
}

// The engines can only forbid tokens, which is what OpenAI's bias of -100 does.
function bannedTokens (logitBias: Record<string, number>): number[] {
  return Object.entries(logitBias).map(([token, bias]) => {
    if (bias !== -100) throw new UnsupportedRequestError(`logit_bias supports only -100 (never generate the token), got ${bias} for token ${token}`, 'logit_bias', 'unsupported_value')
    return Number(token)
  })
}

/** Maps the engine's finish reason onto OpenAI's. */
export function openAiFinishReason (finish: FinishReason): OpenAiFinishReason {
  return finish === 'length' ? 'length' : 'stop'
}

/**
 * One generation for one request. Created by `startGeneration` once the engine has produced its
 * first piece (or finished), so that a failure to start is still an ordinary HTTP error; iterate
 * it for the pieces, then read `finishReason`. `usage` counts as the pieces come.
 */
export class Generation implements AsyncIterable<GeneratedPiece> {
  /** token counts so far (complete once all pieces were read); the same object throughout */
  readonly usage: Usage
  #finishReason: FinishReason | undefined
  #closed: Promise<void> | undefined

  /** `onEnd` runs once, when the engine's generation is over: finished, failed or closed */
  constructor (
    private readonly first: IteratorResult<GeneratedPiece, FinishReason>,
    private readonly rest: AsyncIterator<GeneratedPiece, FinishReason, undefined>,
    promptTokens: number,
    private readonly onEnd: () => void = () => {}
  ) {
    this.usage = { prompt_tokens: promptTokens, completion_tokens: 0, total_tokens: promptTokens }
  }

  async * [Symbol.asyncIterator] (): AsyncGenerator<GeneratedPiece, void, undefined> {
    let step = this.first
    try {
      while (step.done !== true) {
        this.usage.completion_tokens++
        this.usage.total_tokens++
        yield step.value
        step = await this.rest.next()
      }
      this.#finishReason = step.value
    } finally {
      await this.close()
    }
  }

  /** Why the generation ended, once all pieces were read. */
  get finishReason (): OpenAiFinishReason {
    if (this.#finishReason === undefined) throw new Error('the generation has not finished; read all its pieces first')
    return openAiFinishReason(this.#finishReason)
  }

  /**
   * Ends the engine's generation if it still runs (the consumer stopped early, the client left,
   * or nobody ever read it) and resolves once the engine let go of it; idempotent.
   */
  async close (): Promise<void> {
    this.#closed ??= (async () => {
      try {
        await this.rest.return?.()
      } finally {
        this.onEnd()
      }
    })()
    await this.#closed
  }
}

/**
 * Tokenizes `prompt` (control-token texts read as control tokens, as llama-server reads prompts) and
 * starts generating from those token ids, so that every engine gets identical input. The reply is
 * cut where the context is full, the same way for every engine; `promptField` names the request
 * field to blame for a prompt that does not fit; `onEnd` runs once the engine is done with it.
 */
export async function startGeneration (engine: Engine, prompt: string | readonly number[], options: GenerateOptions, promptField: string, onEnd?: () => void): Promise<Generation> {
  const tokens = typeof prompt === 'string' ? await engine.tokenize(prompt, { special: true }) : prompt
  const room = engine.contextSize - tokens.length
  if (room < 1) {
    throw new InvalidRequestError(`the prompt is ${tokens.length} tokens, but the model's context holds ${engine.contextSize} including the reply; shorten the prompt`, promptField, 'context_length_exceeded')
  }
  const generator = engine.generate({ tokens }, { ...options, maxTokens: Math.min(options.maxTokens, room) })
  const first = await generator.next()
  return new Generation(first, generator, tokens.length, onEnd)
}
