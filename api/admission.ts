import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { QueueFullError } from './errors.js'

/** The admission queue's load, read by metrics (gauges) and `mesh status`. */
export interface AdmissionGauge {
  /** requests waiting for a slot */
  readonly depth: number
  /** slots held by requests generating or streaming (a request for n choices holds n) */
  readonly active: number
  /** requests the engine serving now generates at once */
  readonly slots: number
}

export interface AdmissionOptions {
  /**
   * requests the engine generates at once: its parallel slots, asked at every admission since
   * a replaced engine may have other slots (a cluster plan's several, the local engine's one)
   */
  slots: () => number
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
  /** slots it needs at once */
  count: number
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
    this.#options = options
  }

  get depth (): number { return this.#waiting.length }
  get active (): number { return this.#active }
  get slots (): number { return this.#slots() }

  /**
   * Waits for `count` slots (all at once, so that two requests for several cannot each hold part
   * and wait for the other) and resolves with the function that frees them (idempotent). Throws
   * QueueFullError when the queue is full, and the signal's reason when it aborts while waiting.
   */
  async acquire (signal: AbortSignal, count = 1): Promise<() => void> {
    signal.throwIfAborted()
    if (this.#fits(count) && this.#waiting.length === 0) return this.#take(count)
    if (this.#waiting.length >= this.#options.maxQueue) {
      throw new QueueFullError(`the server is busy: ${this.#active} requests are generating and ${this.#waiting.length} are waiting; retry after ${this.#options.retryAfterSeconds} s`, this.#options.retryAfterSeconds)
    }
    return await new Promise((resolve, reject) => {
      const waiter: Waiter = {
        count,
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

  // An engine has at least one slot, whatever a replaced one reports.
  #slots (): number {
    return Math.max(1, this.#options.slots())
  }

  // A request for more slots than a swapped-in engine has runs alone rather than never.
  #fits (count: number): boolean {
    return this.#active + count <= this.#slots() || this.#active === 0
  }

  #take (count: number): () => void {
    this.#active += count
    let released = false
    return () => {
      if (released) return
      released = true
      this.#active -= count
      // Freed slots pass straight to the longest waiters, so a newcomer cannot jump the queue. An
      // engine with fewer slots than requests running (swapped in meanwhile) admits none until
      // enough have ended; one with more admits several at once.
      for (let next = this.#waiting[0]; next !== undefined && this.#fits(next.count); next = this.#waiting[0]) {
        this.#waiting.shift()
        next.admit(this.#take(next.count))
      }
      if (this.#active === 0 && this.#waiting.length === 0) this.#idle.splice(0).forEach(resolve => { resolve() })
    }
  }
}

async function admissionPlugin (app: FastifyInstance, options: AdmissionOptions): Promise<void> {
  app.decorate('admission', new AdmissionQueue(options))
}

/** Fastify plugin: decorates the instance with `admission`, the queue in front of the engine's slots. */
export const admission = fp(admissionPlugin, { name: 'llmesh-admission', fastify: '5.x' })
