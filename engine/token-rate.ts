import { performance } from 'node:perf_hooks'

/** Long enough to smooth over gaps between requests, short enough that `mesh status --watch` follows changes. */
export const RATE_WINDOW_S = 10

/** Tokens per second over a sliding window of one-second buckets. */
export class TokenRate {
  readonly #counts = new Array<number>(RATE_WINDOW_S + 1).fill(0)
  readonly #seconds = new Array<number>(RATE_WINDOW_S + 1).fill(-1)

  add (now = performance.now()): void {
    const second = Math.floor(now / 1000)
    const slot = second % this.#counts.length
    if (this.#seconds[slot] !== second) {
      this.#seconds[slot] = second
      this.#counts[slot] = 0
    }
    this.#counts[slot]++
  }

  /** Tokens per second in the last RATE_WINDOW_S complete seconds. */
  perSecond (now = performance.now()): number {
    const current = Math.floor(now / 1000)
    let total = 0
    for (let i = 0; i < this.#counts.length; i++) {
      const age = current - this.#seconds[i]
      if (age >= 1 && age <= RATE_WINDOW_S) total += this.#counts[i]
    }
    return total / RATE_WINDOW_S
  }
}
