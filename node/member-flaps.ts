import type { FailureDetector } from './failure-detector.js'

/** Losses of contact within this window count towards flapping. */
export const FLAP_WINDOW_MS = 5 * 60_000

/**
 * Remembers when each member lost contact (suspect or dead), so that `mesh status` can warn
 * about a member that keeps dropping out and coming back.
 */
export class MemberFlaps {
  readonly #losses = new Map<string, number[]>()

  /** Listens to the detector's events from now on. */
  constructor (events: FailureDetector) {
    events.on('suspect', peer => { this.lost(peer) })
    events.on('dead', peer => { this.lost(peer) })
  }

  /** Records a loss of contact with `peer` at `now`. */
  lost (peer: string, now = Date.now()): void {
    const times = (this.#losses.get(peer) ?? []).filter(t => now - t < FLAP_WINDOW_MS)
    // A member first goes suspect, then dead: one outage, counted once.
    if (times.length > 0 && now - times[times.length - 1] < 10_000) return
    times.push(now)
    this.#losses.set(peer, times)
  }

  /** Losses of contact with `peer` within the window before `now`. */
  count (peer: string, now = Date.now()): number {
    return (this.#losses.get(peer) ?? []).filter(t => now - t < FLAP_WINDOW_MS).length
  }
}
