/** How far back the dashboard's time-to-first-token percentiles look. */
export const LATENCY_WINDOW_MS = 60_000

/** Most observations kept, so that a burst of requests cannot grow it without bound. */
const MAX_OBSERVATIONS = 4096

/** Percentiles of the latencies of the last minute, in seconds; null when there were none. */
export interface LatencyPercentiles {
  p50: number | null
  p99: number | null
}

/**
 * Latencies of the last LATENCY_WINDOW_MS, for percentiles that follow the load as it changes
 * (the Prometheus histogram counts since the start). Durations only, nothing of a request.
 */
export class LatencyWindow {
  readonly #times: number[] = []
  readonly #values: number[] = []

  add (seconds: number, now = Date.now()): void {
    this.#times.push(now)
    this.#values.push(seconds)
    if (this.#times.length > MAX_OBSERVATIONS) this.#drop(1)
  }

  percentiles (now = Date.now()): LatencyPercentiles {
    let stale = 0
    while (stale < this.#times.length && this.#times[stale] < now - LATENCY_WINDOW_MS) stale++
    this.#drop(stale)
    if (this.#values.length === 0) return { p50: null, p99: null }
    const sorted = [...this.#values].sort((a, b) => a - b)
    const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]
    return { p50: at(0.5), p99: at(0.99) }
  }

  #drop (count: number): void {
    this.#times.splice(0, count)
    this.#values.splice(0, count)
  }
}
