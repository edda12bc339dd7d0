import { randomInt } from 'node:crypto'
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

/**
 * Refuses (422) each request field that asks for something llmesh does not do yet: `unsupported`
 * maps a field to a test of its value (true: the value asks for it) and the reason. A client that
 * asks for a feature must get it or hear that it did not, never have it silently dropped.
 */
export function refuseUnsupported (body: object, unsupported: Record<string, [asks: (value: unknown) => boolean, reason: string]>): void {
  for (const [field, [asks, reason]] of Object.entries(unsupported)) {
    const value = (body as Record<string, unknown>)[field]
    if (value !== undefined && value !== null && asks(value)) throw new UnsupportedRequestError(`${field} is not supported: ${reason}`, field, 'unsupported_feature')
  }
}

/** Turns OpenAI request fields into engine options (n, the number of choices, is the caller's). */
export function generateOptions (params: SamplingParams, maxTokens: number): Omit<GenerateOptions, 'signal'> {
  const temperature = params.temperature ?? DEFAULT_TEMPERATURE
  const frequency = params.frequency_penalty ?? 0
  const presence = params.presence_penalty ?? 0
  const bias = Object.entries(params.logit_bias ?? {}).map(([token, value]): [number, number] => [Number(token), value])
  return {
    maxTokens,
    sampling: temperature === 0 ? undefined : { temperature, topP: params.top_p ?? undefined, seed: params.seed ?? undefined },
    stop: typeof params.stop === 'string' ? [params.stop] : params.stop ?? [],
    // OpenAI's -100 means never; the engines ban such tokens outright.
    bannedTokens: bias.filter(([, value]) => value <= -100).map(([token]) => token),
    logitBias: new Map(bias.filter(([, value]) => value > -100 && value !== 0)),
    ...(frequency !== 0 || presence !== 0 ? { penalties: { frequency, presence } } : {})
  }
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

  /**
   * `usage` is counted into as the pieces come (the choices of one request share one);
   * `onEnd` runs once, when the engine's generation is over: finished, failed or closed
   */
  constructor (
    private readonly first: IteratorResult<GeneratedPiece, FinishReason>,
    private readonly rest: AsyncIterator<GeneratedPiece, FinishReason, undefined>,
    usage: Usage,
    private readonly onEnd: () => void = () => {}
  ) {
    this.usage = usage
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
 * starts `choices` generations from those token ids, so that every engine gets identical input;
 * sampled choices get seeds of their own (the request's seed plus the choice's index). The reply is
 * cut where the context is full, the same way for every engine; `promptField` names the request
 * field to blame for a prompt that does not fit; `onEnd` runs once the engine is done with all.
 */
export async function startGenerations (engine: Engine, prompt: string | readonly number[], options: GenerateOptions, promptField: string, choices: number, onEnd: () => void = () => {}): Promise<Generation[]> {
  const tokens = typeof prompt === 'string' ? await engine.tokenize(prompt, { special: true }) : prompt
  const room = engine.contextSize - tokens.length
  if (room < 1) {
    throw new InvalidRequestError(`the prompt is ${tokens.length} tokens, but the model's context holds ${engine.contextSize} including the reply; shorten the prompt`, promptField, 'context_length_exceeded')
  }
  const usage: Usage = { prompt_tokens: tokens.length, completion_tokens: 0, total_tokens: tokens.length }
  let running = choices
  const ended = (): void => { if (--running === 0) onEnd() }
  const baseSeed = options.sampling?.seed ?? (choices > 1 ? randomInt(2 ** 31) : undefined)
  const starts = Array.from({ length: choices }, async (_, index) => {
    const sampling = options.sampling === undefined ? undefined : { ...options.sampling, seed: baseSeed === undefined ? undefined : (baseSeed + index) % 2 ** 32 }
    const generator = engine.generate({ tokens }, { ...options, sampling, maxTokens: Math.min(options.maxTokens, room) })
    try {
      return new Generation(await generator.next(), generator, usage, ended)
    } catch (err) {
      ended()
      throw err
    }
  })
  const started = await Promise.allSettled(starts)
  const failed = started.find((result): result is PromiseRejectedResult => result.status === 'rejected')
  const generations = started.flatMap(result => result.status === 'fulfilled' ? [result.value] : [])
  if (failed !== undefined) {
    await Promise.all(generations.map(async generation => { await generation.close() }))
    throw failed.reason
  }
  return generations
}
