import { EventEmitter } from 'node:events'
import { UNREPORTED_TOKEN, type Engine, type FinishReason, type GeneratedPiece, type GenerateInput, type GenerateOptions, type TokenizeOptions } from './engine.js'
import { EngineDisposedError, EngineLostError, EngineUnavailableError, GroupLostError } from './errors.js'
import { StopTextFilter } from './stop-text.js'

/** Where the serving engine stands; `mesh status` and `/health` report it. */
export type ServingState = 'loading' | 'ready' | 'unavailable' | 'failed' | 'stopped'

export interface ServingEngineOptions {
  /**
   * How long a generation whose engine failed waits for the next engine before it gives up with
   * EngineUnavailableError (default 60 s).
   */
  recoveryTimeoutMs?: number
}

export interface ServingEngineEvents {
  /** the engine crashed, or failed to load, and is restarted after `delayMs` (a restart counter for metrics) */
  restart: [{ reason: string, delayMs: number }]
  /** the engine crashed too often and is given up on; the node reports 'failed' */
  failed: [reason: string]
  /** a generation whose engine failed continues on the next engine */
  resume: []
}

/** Seconds a client is told to wait while an engine loads. */
const LOADING_RETRY_AFTER_S = 5

const DEFAULT_RECOVERY_TIMEOUT_MS = 60_000

/**
 * The engine the API serves from. It forwards to the engine of the current plan and swaps it
 * when the plan changes (a member joins or dies), so the API holds one engine for its whole
 * life while the coordinator moves between the local engine and llama-server with workers.
 *
 * A generation whose engine fails (its process died, or it was replaced) continues on the next
 * engine: the prompt and the tokens produced so far are submitted again, so the caller's stream
 * just goes on; greedy output is the same as without the failure.
 */
export class ServingEngine extends EventEmitter<ServingEngineEvents> implements Engine {
  readonly name = 'serving'
  readonly #recoveryTimeoutMs: number
  #current: Engine | undefined
  #state: ServingState = 'loading'
  #reason = 'the model is loading'
  #swap: Promise<void> = Promise.resolve()
  #active = 0
  #idleWaiters: Array<() => void> = []
  #changeWaiters = new Set<() => void>()
  readonly #contextSize: number

  /** `contextSize` is what every engine this one swaps in is started with */
  constructor (readonly modelPath: string, contextSize: number, options: ServingEngineOptions = {}) {
    super()
    this.#contextSize = contextSize
    this.#recoveryTimeoutMs = options.recoveryTimeoutMs ?? DEFAULT_RECOVERY_TIMEOUT_MS
  }

  /** What one generation can hold on the engine serving now: an engine with several slots divides its context between them. */
  get contextSize (): number {
    return this.#current?.contextSize ?? this.#contextSize
  }

  /** The slots of the engine serving now; one while none is (requests are refused then anyway). */
  get slots (): number {
    return this.#current?.slots ?? 1
  }

  get state (): ServingState {
    return this.#state
  }

  /** Why the engine is not ready, in words (empty when ready). */
  get reason (): string {
    return this.#state === 'ready' ? '' : this.#reason
  }

  /** Name of the engine serving now ("local", "llama-server"), or undefined while none is. */
  get kind (): string | undefined {
    return this.#state === 'ready' ? this.#current?.name : undefined
  }

  get threads (): number {
    return this.#current?.threads ?? 0
  }

  /** Generations running now (started and not yet ended). */
  get activeGenerations (): number {
    return this.#active
  }

  /** Resolves once no generation runs, e.g. to swap engines without interrupting a stream. */
  async whenIdle (): Promise<void> {
    if (this.#active === 0) return
    await new Promise<void>(resolve => { this.#idleWaiters.push(resolve) })
  }

  /**
   * Replaces the current engine with the one `load` produces. Requests arriving meanwhile get
   * EngineUnavailableError; generations on the old engine continue on the new one. Swaps run
   * one after another in the order they were asked for.
   */
  async replace (load: () => Promise<Engine>, why = 'the model is loading'): Promise<void> {
    await this.#enqueue(async () => {
      await this.#takeOut('loading', why)
      try {
        const next = await load()
        if (this.#stopped()) {
          await next.dispose()
          return
        }
        this.#current = next
        this.#set('ready', '')
      } catch (err) {
        this.#set('unavailable', (err as Error).message)
        throw err
      }
    })
  }

  /** Takes the engine out of service with a reason, e.g. a plan that does not fit in memory. */
  async markUnavailable (reason: string): Promise<void> {
    await this.#enqueue(async () => { await this.#takeOut('unavailable', reason) })
  }

  /** True when `engine` is the one serving now (not one replaced or being disposed). */
  serves (engine: Engine): boolean {
    return engine === this.#current && this.#state === 'ready'
  }

  /**
   * Says that `engine` died on its own: new requests get EngineUnavailableError until the next
   * replace(), which `delayMs` from now is due (reported as a restart).
   */
  engineCrashed (engine: Engine, reason: string, delayMs: number): void {
    if (!this.serves(engine)) return
    this.#set('loading', `${reason}; restarting in ${delayMs / 1000} s`)
    this.emit('restart', { reason, delayMs })
  }

  /** Says that loading an engine failed and another try follows in `delayMs` (reported as a restart). */
  loadFailed (reason: string, delayMs: number): void {
    if (this.#state !== 'unavailable') return
    this.#set('unavailable', `${reason}; trying again in ${delayMs / 1000} s`)
    this.emit('restart', { reason, delayMs })
  }

  /** Gives up on serving (the engine keeps crashing): 'failed' with `reason`, until the next replace(). */
  async markFailed (reason: string): Promise<void> {
    await this.#enqueue(async () => { await this.#takeOut('failed', reason) })
    this.emit('failed', reason)
  }

  async tokenize (text: string, options?: TokenizeOptions): Promise<number[]> {
    return await this.#engine().tokenize(text, options)
  }

  /**
   * Streams the continuation of `input` from the current engine, continuing on the next engine
   * when this one fails. Stop texts are matched here, so that a match can span the seam.
   * A text prompt is tokenized first (as plain text), so that every engine continues the same tokens.
   */
  async * generate (input: GenerateInput, options: GenerateOptions): AsyncGenerator<GeneratedPiece, FinishReason, undefined> {
    this.#active++
    try {
      let engine = this.#engine()
      const prompt = typeof input === 'string' ? await engine.tokenize(input) : input.tokens
      const stops = new StopTextFilter(options.stop ?? [])
      // Every token the engines generated, also those the stop filter still holds back.
      const produced: number[] = []
      for (;;) {
        const remaining = options.maxTokens - produced.length
        // The engine failed after the last token, before it said so.
        if (produced.length > 0 && remaining < 1) {
          yield * stops.flush()
          return 'length'
        }
        try {
          // Greedy output must not change at the seam: the engine rebuilds its state token by token.
          const resumeAfter = options.sampling === undefined || options.sampling.temperature === 0 ? produced.length : 0
          const pieces = engine.generate({ tokens: [...prompt, ...produced] }, { ...options, stop: [], maxTokens: remaining, resumeAfter })
          return yield * relay(pieces, stops, produced)
        } catch (err) {
          if (options.signal?.aborted === true || !isEngineFailure(err)) throw err
          const unresumable = produced.includes(UNREPORTED_TOKEN)
            ? 'the engine did not report every token it generated (an incomplete character\'s)'
            : options.grammar !== undefined && produced.length > 0 ? 'its grammar would start over on the next engine' : undefined
          if (unresumable !== undefined) {
            throw new EngineUnavailableError(`the engine failed during the generation (${(err as Error).message}), which cannot be continued exactly: ${unresumable}`, LOADING_RETRY_AFTER_S)
          }
          engine = await this.#nextEngine(engine, err as Error, options.signal)
          this.emit('resume')
        }
      }
    } finally {
      if (--this.#active === 0) for (const resolve of this.#idleWaiters.splice(0)) resolve()
    }
  }

  // Waits for a ready engine other than the one that failed (or the same one, when only one of
  // its replica groups failed), at most the recovery timeout.
  async #nextEngine (failed: Engine, failure: Error, signal: AbortSignal | undefined): Promise<Engine> {
    const deadline = Date.now() + this.#recoveryTimeoutMs
    for (;;) {
      if (this.#stopped()) throw new EngineDisposedError('the engine was stopped during a generation')
      if (this.#state === 'failed') throw new EngineUnavailableError(`the engine failed during the generation and cannot be restarted: ${this.#reason}`, LOADING_RETRY_AFTER_S)
      // A lost replica group leaves its engine serving on the other groups.
      if (this.#state === 'ready' && this.#current !== undefined && (this.#current !== failed || failure instanceof GroupLostError)) return this.#current
      const left = deadline - Date.now()
      if (left <= 0) {
        throw new EngineUnavailableError(`the engine failed during the generation (${failure.message}) and no engine was ready to continue it within ${this.#recoveryTimeoutMs / 1000} s: ${this.#reason}`, LOADING_RETRY_AFTER_S)
      }
      await this.#changed(left, signal)
    }
  }

  // Resolves at the next state change, after `timeoutMs`, or rejects when `signal` aborts.
  async #changed (timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    signal?.throwIfAborted()
    let wake!: () => void
    const onAbort = (): void => { wake() }
    const timer = setTimeout(() => { wake() }, timeoutMs)
    try {
      await new Promise<void>(resolve => {
        wake = resolve
        this.#changeWaiters.add(resolve)
        signal?.addEventListener('abort', onAbort, { once: true })
      })
    } finally {
      clearTimeout(timer)
      this.#changeWaiters.delete(wake)
      signal?.removeEventListener('abort', onAbort)
    }
    signal?.throwIfAborted()
  }

  #set (state: ServingState, reason: string): void {
    this.#state = state
    this.#reason = reason
    for (const wake of this.#changeWaiters) wake()
  }

  // Disposes the current engine (its generations fail over to the next one) and enters `state`.
  async #takeOut (state: 'loading' | 'unavailable' | 'failed', reason: string): Promise<void> {
    if (this.#stopped()) return
    const previous = this.#current
    this.#current = undefined
    this.#set(state, reason)
    await previous?.dispose()
  }

  async #enqueue (job: () => Promise<void>): Promise<void> {
    const swap = this.#swap.then(async () => {
      if (!this.#stopped()) await job()
    })
    // A failed swap must not block the ones after it.
    this.#swap = swap.catch(() => {})
    await swap
  }

  #engine (): Engine {
    if (this.#stopped()) throw new EngineDisposedError('the engine was stopped')
    if (this.#current === undefined || this.#state !== 'ready') throw new EngineUnavailableError(`no engine can serve right now: ${this.#reason}`, LOADING_RETRY_AFTER_S)
    return this.#current
  }

  // A method, so that TypeScript does not narrow #state across the awaits in replace().
  #stopped (): boolean {
    return this.#state === 'stopped'
  }

  async dispose (): Promise<void> {
    this.#set('stopped', 'the engine was stopped')
    await this.#swap
    const current = this.#current
    this.#current = undefined
    await current?.dispose()
  }
}

/**
 * Passes one engine's pieces on through the stop filter, recording each generated token in
 * `produced`; ends the engine's generation when a stop text is found or the caller stops.
 */
async function * relay (pieces: AsyncGenerator<GeneratedPiece, FinishReason, undefined>, stops: StopTextFilter, produced: number[]): AsyncGenerator<GeneratedPiece, FinishReason, undefined> {
  let done = false
  try {
    for (;;) {
      const step = await pieces.next()
      if (step.done === true) {
        done = true
        yield * stops.flush()
        return step.value
      }
      produced.push(step.value.token)
      const { pieces: ready, stopped } = stops.push(step.value)
      yield * ready
      if (stopped) return 'stop'
    }
  } finally {
    if (!done) await pieces.return('stop').catch(() => {})
  }
}

/** True for a failure of the engine itself (it died, or was replaced), which the next engine can take over. */
function isEngineFailure (err: unknown): boolean {
  return err instanceof EngineLostError || err instanceof EngineDisposedError
}
