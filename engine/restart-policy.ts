export interface RestartPolicyOptions {
  /** wait before the restart after a first crash; each further crash in the window doubles it (default 1 s) */
  firstDelayMs?: number
  /** the longest wait before a restart (default 16 s) */
  maxDelayMs?: number
  /** this many crashes within `windowMs` and the process is given up on (default 5) */
  maxCrashes?: number
  /** how far back crashes count (default 60 s) */
  windowMs?: number
}

/** What to do about a crash: restart after `delayMs`, or give up (too many crashes in a row; `reason` reads "crashed 5 times within 60 s"). */
export type RestartDecision =
  | { action: 'restart', delayMs: number, crashes: number }
  | { action: 'give-up', crashes: number, reason: string }

/**
 * When to restart a supervised process that exited on its own: after 1, 2, 4, 8, 16 s (cap) for
 * crashes that follow each other within a minute, and not at all after the fifth in a minute,
 * so that a process that cannot run ends in a failed state someone sees instead of a silent loop.
 * Pure: the caller passes the time of each crash.
 */
export class RestartPolicy {
  readonly #firstDelayMs: number
  readonly #maxDelayMs: number
  readonly #maxCrashes: number
  readonly #windowMs: number
  #crashes: number[] = []

  constructor (options: RestartPolicyOptions = {}) {
    this.#firstDelayMs = options.firstDelayMs ?? 1000
    this.#maxDelayMs = options.maxDelayMs ?? 16_000
    this.#maxCrashes = options.maxCrashes ?? 5
    this.#windowMs = options.windowMs ?? 60_000
  }

  /** Records a crash at `now` (ms) and says whether and when to restart. */
  crashed (now: number): RestartDecision {
    this.#crashes = this.#crashes.filter(at => now - at < this.#windowMs)
    this.#crashes.push(now)
    const crashes = this.#crashes.length
    if (crashes >= this.#maxCrashes) {
      return { action: 'give-up', crashes, reason: `crashed ${crashes} times within ${this.#windowMs / 1000} s` }
    }
    return { action: 'restart', delayMs: Math.min(this.#firstDelayMs * 2 ** (crashes - 1), this.#maxDelayMs), crashes }
  }

  /** Forgets past crashes, e.g. once the situation changed (a new plan) or a person restarted it. */
  reset (): void {
    this.#crashes = []
  }
}
