/** Failed invite redemptions a source may make per window before it is refused unheard. */
export const REDEMPTION_FAILURE_LIMIT = 10
/** The window over which failures count, in ms. */
export const REDEMPTION_WINDOW_MS = 60_000
const MAX_TRACKED_SOURCES = 1024

/**
 * Counts failed invite redemptions per source (the joiner's host) over a sliding window.
 * Invite secrets are 256-bit, so guessing is no threat to them; the limit keeps a guesser
 * from costing the coordinator a datastore lookup per try, and the count makes it visible.
 */
export class RedemptionLimiter {
  private readonly failures = new Map<string, number[]>()
  private readonly limit: number
  private readonly windowMs: number

  constructor (limit = REDEMPTION_FAILURE_LIMIT, windowMs = REDEMPTION_WINDOW_MS) {
    this.limit = limit
    this.windowMs = windowMs
  }

  private recent (source: string, now: number): number[] {
    const times = (this.failures.get(source) ?? []).filter(t => now - t < this.windowMs)
    if (times.length === 0) this.failures.delete(source)
    else this.failures.set(source, times)
    return times
  }

  /** True when `source` failed `limit` times within the window: refuse it without looking. */
  blocked (source: string, now = Date.now()): boolean {
    return this.recent(source, now).length >= this.limit
  }

  /** Records a failure of `source`; returns its failures within the window. */
  failed (source: string, now = Date.now()): number {
    // Sources that stopped failing are forgotten only when seen again: sweep them now and then.
    if (this.failures.size >= MAX_TRACKED_SOURCES) for (const known of [...this.failures.keys()]) this.recent(known, now)
    const times = this.recent(source, now)
    times.push(now)
    this.failures.set(source, times)
    return times.length
  }

  /** True for the failure count that reaches the limit: the moment to warn, once per burst. */
  reachedLimit (failures: number): boolean {
    return failures === this.limit
  }
}
