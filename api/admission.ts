import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { QueueFullError } from './errors.js'

/** The admission queue's load, read by metrics (gauges) and `mesh status`. */
export interface AdmissionGauge {
  /** requests waiting for a slot */
  readonly depth: number
  /** requests holding a slot: generating or streaming */
  readonly active: number
}

export interface AdmissionOptions {
  /** requests the engine generates at once: its parallel slots */
  slots: number
  /** requests that may wait for a slot; one more is answered 429 */
  maxQueue: number
  /** the Retry-After a refused request gets, in seconds */
  retryAfterSeconds: number
}

declare module 'fastify' {
  interface FastifyInstance {
    /** the admission queue in front of the engine's slots (see AdmissionQueue) */
    admission: AdmissionQueue
  }
}

interface Waiter {
  admit: (release: () => void) => void
}

/**
 * A bounded FIFO queue in front of the engine's slots. A request holds a slot from `acquire`
 * until it calls the release function it got; past `maxQueue` waiters, `acquire` refuses at once.
 */
export class AdmissionQueue implements AdmissionGauge {
  readonly #options: AdmissionOptions
  readonly #waiting: Waiter[] = []
  #active = 0
  readonly #idle: Array<() => void> = []

  constructor (options: AdmissionOptions) {
    if (options.slots < 1) throw new RangeError(`an engine has at least one slot, got ${options.slots}`)
    this.#options = options
  }

  get depth (): number { return this.#waiting.length }
  get active (): number { return this.#active }

  /**
   * Waits for a slot and resolves with the function that frees it (idempotent). Throws
   * QueueFullError when the queue is full, and the signal's reason when it aborts while waiting.
   */
  async acquire (signal: AbortSignal): Promise<() => void> {
    signal.throwIfAborted()
    if (this.#active < this.#options.slots && this.#waiting.length === 0) return this.#take()
    if (this.#waiting.length >= this.#options.maxQueue) {
      throw new QueueFullError(`the server is busy: ${this.#active} requests are generating and ${this.#waiting.length} are waiting; retry after ${this.#options.retryAfterSeconds} s`, this.#options.retryAfterSeconds)
    }
    return await new Promise((resolve, reject) => {
      const waiter: Waiter = {
        admit: release => {
          signal.removeEventListener('abort', onAbort)
          resolve(release)
        }
      }
      const onAbort = (): void => {
        this.#waiting.splice(this.#waiting.indexOf(waiter), 1)
        reject(signal.reason)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.#waiting.push(waiter)
    })
  }

  /** Resolves once no request holds a slot or waits for one. */
  async idle (): Promise<void> {
    if (this.#active === 0 && this.#waiting.length === 0) return
    await new Promise<void>(resolve => { this.#idle.push(resolve) })
  }

  #take (): () => void {
    this.#active++
    let released = false
    return () => {
      if (released) return
      released = true
      this.#active--
      // The slot passes straight to the longest waiter, so a newcomer cannot jump the queue.
      const next = this.#waiting.shift()
      if (next !== undefined) next.admit(this.#take())
      else if (this.#active === 0) this.#idle.splice(0).forEach(resolve => { resolve() })
    }
  }
}

async function admissionPlugin (app: FastifyInstance, options: AdmissionOptions): Promise<void> {
  app.decorate('admission', new AdmissionQueue(options))
}

/** Fastify plugin: decorates the instance with `admission`, the queue in front of the engine's slots. */
export const admission = fp(admissionPlugin, { name: 'llmesh-admission', fastify: '5.x' })
