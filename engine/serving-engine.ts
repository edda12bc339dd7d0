import type { Engine, FinishReason, GeneratedPiece, GenerateInput, GenerateOptions, TokenizeOptions } from './engine.js'
import { EngineDisposedError, EngineUnavailableError } from './errors.js'

/** Where the serving engine stands; `mesh status` and `/health` report it. */
export type ServingState = 'loading' | 'ready' | 'unavailable' | 'stopped'

/** Seconds a client is told to wait while an engine loads. */
const LOADING_RETRY_AFTER_S = 5

/**
 * The engine the API serves from. It forwards to the engine of the current plan and swaps it
 * when the plan changes (a member joins or dies), so the API holds one engine for its whole
 * life while the coordinator moves between the local engine and llama-server with workers.
 */
export class ServingEngine implements Engine {
  readonly name = 'serving'
  #current: Engine | undefined
  #state: ServingState = 'loading'
  #reason = 'the model is loading'
  #swap: Promise<void> = Promise.resolve()

  /** `contextSize` is what every engine this one swaps in is started with */
  constructor (readonly modelPath: string, readonly contextSize: number) {}

  get state (): ServingState {
    return this.#state
  }

  /** Why the engine is not ready, in words (empty when ready). */
  get reason (): string {
    return this.#state === 'ready' ? '' : this.#reason
  }

  /** Name of the engine serving now ("local", "llama-server"), or undefined while none is. */
  get kind (): string | undefined {
    return this.#current?.name
  }

  get threads (): number {
    return this.#current?.threads ?? 0
  }

  /**
   * Replaces the current engine with the one `load` produces. Requests arriving meanwhile get
   * EngineUnavailableError; generations on the old engine end when it is disposed. Swaps run
   * one after another in the order they were asked for.
   */
  async replace (load: () => Promise<Engine>, why = 'the model is loading'): Promise<void> {
    const swap = this.#swap.then(async () => {
      if (this.#state === 'stopped') return
      const previous = this.#current
      this.#current = undefined
      this.#state = 'loading'
      this.#reason = why
      await previous?.dispose()
      try {
        const next = await load()
        if (this.#stopped()) {
          await next.dispose()
          return
        }
        this.#current = next
        this.#state = 'ready'
      } catch (err) {
        this.#state = 'unavailable'
        this.#reason = (err as Error).message
        throw err
      }
    })
    // A failed swap must not block the ones after it.
    this.#swap = swap.catch(() => {})
    await swap
  }

  /** Takes the engine out of service with a reason, e.g. a plan that does not fit in memory. */
  async markUnavailable (reason: string): Promise<void> {
    await this.replace(async () => { throw new EngineUnavailableError(reason, LOADING_RETRY_AFTER_S) }, reason).catch(() => {})
  }

  async tokenize (text: string, options?: TokenizeOptions): Promise<number[]> {
    return await this.#engine().tokenize(text, options)
  }

  async * generate (input: GenerateInput, options: GenerateOptions): AsyncGenerator<GeneratedPiece, FinishReason, undefined> {
    return yield * this.#engine().generate(input, options)
  }

  #engine (): Engine {
    if (this.#stopped()) throw new EngineDisposedError('the engine was stopped')
    if (this.#current === undefined) throw new EngineUnavailableError(`no engine can serve right now: ${this.#reason}`, LOADING_RETRY_AFTER_S)
    return this.#current
  }

  // A method, so that TypeScript does not narrow #state across the awaits in replace().
  #stopped (): boolean {
    return this.#state === 'stopped'
  }

  async dispose (): Promise<void> {
    this.#state = 'stopped'
    await this.#swap
    const current = this.#current
    this.#current = undefined
    await current?.dispose()
  }
}
