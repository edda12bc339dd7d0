import type { Engine, FinishReason, GeneratedPiece, GenerateInput, GenerateOptions, TokenizeOptions } from './engine.js'
import { EngineDisposedError, EngineLostError, EngineUnavailableError, GroupLostError } from './errors.js'
import { TokenRate } from './token-rate.js'

/** One replica group's load, for `/metrics` and `mesh status`; counts only, never content. */
export interface GroupLoad {
  /** the group's id, kept while the group serves */
  group: string
  /** generations the group's engine runs at once */
  slots: number
  /** generations running on the group now */
  active: number
  /** tokens the group generated per second, over the last RATE_WINDOW_S seconds */
  tokensPerSecond: number
}

interface Group {
  id: string
  engine: Engine
  /** predicted decode speed (the scheduler's), to choose between groups equally busy */
  speed: number
  active: number
  rate: TokenRate
  /** its engine failed during a generation: no new work until the coordinator replaces it */
  failed: boolean
}

/** Seconds a client is told to wait when no group serves (the coordinator is rebuilding one). */
const NO_GROUP_RETRY_AFTER_S = 5

/**
 * One engine over replica groups, each an engine of its own (a llama-server) holding the whole
 * model: a generation goes to the group with a free slot that runs the fewest generations, the
 * faster one on a tie, so every group adds throughput. Its slots are the groups' slots added up,
 * so the API queues a request only when every group is full. When a group's engine fails during
 * a generation, the group takes no more work and the generation fails with GroupLostError while
 * other groups serve, so that the caller (ServingEngine) continues it on another group.
 */
export class GroupRouter implements Engine {
  readonly #groups = new Map<string, Group>()

  /** `contextSize` is each group's context per generation, reported while no group serves */
  constructor (readonly modelPath: string, private readonly groupContextSize: number) {}

  get name (): string {
    return this.#serving()[0]?.engine.name ?? 'llama-server'
  }

  get threads (): number {
    return this.#serving()[0]?.engine.threads ?? 0
  }

  get contextSize (): number {
    return this.#serving()[0]?.engine.contextSize ?? this.groupContextSize
  }

  get slots (): number {
    return this.#serving().reduce((sum, group) => sum + group.engine.slots, 0)
  }

  /** Adds a group's engine; it takes requests at once. */
  add (id: string, engine: Engine, speed: number): void {
    this.#groups.set(id, { id, engine, speed, active: 0, rate: new TokenRate(), failed: false })
  }

  /** Takes a group out (its running generations fail over when the caller disposes its engine); returns its engine. */
  remove (id: string): Engine | undefined {
    const group = this.#groups.get(id)
    this.#groups.delete(id)
    if (group !== undefined) group.failed = true
    return group?.engine
  }

  /** The ids of the groups, in the order they were added. */
  get groupIds (): string[] {
    return [...this.#groups.keys()]
  }

  /** Each group's slots, active generations and tokens per second now. */
  loads (): GroupLoad[] {
    return [...this.#groups.values()].map(group => ({
      group: group.id,
      slots: group.failed ? 0 : group.engine.slots,
      active: group.active,
      tokensPerSecond: Math.round(group.rate.perSecond() * 10) / 10
    }))
  }

  async tokenize (text: string, options?: TokenizeOptions): Promise<number[]> {
    return await this.#pick().engine.tokenize(text, options)
  }

  async * generate (input: GenerateInput, options: GenerateOptions): AsyncGenerator<GeneratedPiece, FinishReason, undefined> {
    const group = this.#pick(true)
    group.active++
    const pieces = group.engine.generate(input, options)
    try {
      for (;;) {
        const step = await pieces.next()
        if (step.done === true) return step.value
        group.rate.add()
        yield step.value
      }
    } catch (err) {
      if (options.signal?.aborted === true || !(err instanceof EngineLostError || err instanceof EngineDisposedError)) throw err
      group.failed = true
      if (this.#serving().length > 0) throw new GroupLostError(`replica group ${group.id} failed during a generation: ${err.message}`, { cause: err })
      throw err
    } finally {
      group.active--
      // Ends the group's generation when our consumer stops early.
      await pieces.return('stop').catch(() => {})
    }
  }

  /** Disposes every group's engine. */
  async dispose (): Promise<void> {
    const engines = [...this.#groups.values()].map(group => group.engine)
    this.#groups.clear()
    await Promise.all(engines.map(async engine => { await engine.dispose() }))
  }

  #serving (): Group[] {
    return [...this.#groups.values()].filter(group => !group.failed)
  }

  // A group with a free slot first, then the fewest generations running, then the fastest.
  #pick (forGeneration = false): Group {
    const candidates = this.#serving()
    if (candidates.length === 0) {
      // A generation waits for the next engine (ServingEngine); anything else is told to retry.
      if (forGeneration) throw new EngineLostError('no replica group serves right now')
      throw new EngineUnavailableError('no replica group serves right now; the coordinator is rebuilding them', NO_GROUP_RETRY_AFTER_S)
    }
    const full = (group: Group): number => group.active >= group.engine.slots ? 1 : 0
    return candidates.reduce((best, group) => {
      const order = full(group) - full(best) || group.active - best.active || best.speed - group.speed
      return order < 0 ? group : best
    })
  }
}
