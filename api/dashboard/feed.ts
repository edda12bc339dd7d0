import type { ServingLoad } from '../metrics.js'
import type { LatencyPercentiles } from '../latency-window.js'

/** How often a load sample is taken, and how many the dashboard's charts keep (10 minutes). */
export const SAMPLE_INTERVAL_MS = 1000
export const SAMPLES_KEPT = 600

/** Audit records the dashboard shows. */
export const AUDIT_RECORDS_SHOWN = 20

/** The status document is sent on every change, and at least this often for its RTTs and ages. */
const STATUS_REFRESH_MS = 5000

/** Fields of the status document that move all the time; a change in them alone is sent at the refresh, not at once. */
const VOLATILE_FIELDS = ['rttMs', 'lastSeenMs', 'load', 'tokensPerSecond', 'activeRequests', 'timePerToken']

/** One load sample: numbers only. */
export interface LoadSample extends ServingLoad {
  /** ms since the epoch */
  t: number
  ttftP50: number | null
  ttftP99: number | null
}

/** What the dashboard shows of an audit record: counts, durations and outcome, never content. */
export interface AuditSummary {
  seq: number
  time: string
  model: string | null
  promptTokens: number
  completionTokens: number
  durationMs: number
  status: number
}

/** A member changed state (joined, suspect, dead, failed, left, revoked). */
export interface MemberChange {
  peerId: string
  change: 'join' | 'leave' | 'suspect' | 'dead' | 'failed' | 'revoked'
}

/** Where the dashboard reads the cluster; the coordinator provides it. */
export interface DashboardSource {
  /** the `mesh status --json` document */
  status: () => Promise<object>
  /** calls `listener` on every member change until the returned function is called */
  onMemberChange: (listener: (change: MemberChange) => void) => () => void
  /** the last `count` audit records, oldest first */
  recentAudit: (count: number) => Promise<AuditSummary[]>
  /** llama-server and rpc-server restarts after crashes, on this node */
  restarts: () => Promise<number>
}

/** The numbers behind the load charts. */
export interface LoadSource {
  load: () => ServingLoad
  recentTimeToFirstToken: () => LatencyPercentiles
}

/** One server-sent event: its name and JSON data. */
export interface FeedEvent {
  event: 'history' | 'load' | 'status' | 'member' | 'audit'
  data: unknown
}

type Subscriber = (event: FeedEvent) => void

/**
 * Samples the load once a second (always, so that a page opened later sees the last 10 minutes)
 * and, while a page listens, the status document, sending it whenever what it says changed, and
 * member changes the moment they happen. It keeps numbers and the status document only: no
 * request's content ever reaches it.
 */
export class DashboardFeed {
  readonly #source: DashboardSource
  readonly #load: LoadSource
  readonly #samples: LoadSample[] = []
  readonly #subscribers = new Set<Subscriber>()
  readonly #timer: NodeJS.Timeout
  readonly #stopMemberChanges: () => void
  #lastStatus = ''
  #lastStatusAt = 0
  #lastAuditSeq = -1
  #refreshing = false

  constructor (source: DashboardSource, load: LoadSource) {
    this.#source = source
    this.#load = load
    this.#timer = setInterval(() => { this.#tick() }, SAMPLE_INTERVAL_MS)
    this.#timer.unref()
    this.#stopMemberChanges = source.onMemberChange(change => {
      this.#send({ event: 'member', data: { ...change, t: Date.now() } })
      void this.#refresh()
    })
  }

  /** Sends the history, the status and the audit records to `subscriber` at once, then every change. */
  async subscribe (subscriber: Subscriber): Promise<() => void> {
    subscriber({ event: 'history', data: this.#samples })
    subscriber({ event: 'status', data: await this.#statusDocument() })
    subscriber({ event: 'audit', data: await this.#audit() })
    this.#subscribers.add(subscriber)
    return () => { this.#subscribers.delete(subscriber) }
  }

  close (): void {
    clearInterval(this.#timer)
    this.#stopMemberChanges()
    this.#subscribers.clear()
  }

  #tick (): void {
    const ttft = this.#load.recentTimeToFirstToken()
    const sample: LoadSample = { t: Date.now(), ...this.#load.load(), ttftP50: ttft.p50, ttftP99: ttft.p99 }
    this.#samples.push(sample)
    if (this.#samples.length > SAMPLES_KEPT) this.#samples.shift()
    if (this.#subscribers.size === 0) return
    this.#send({ event: 'load', data: sample })
    void this.#refresh()
  }

  // One refresh at a time: a slow status request must not pile up behind the next tick.
  async #refresh (): Promise<void> {
    if (this.#refreshing || this.#subscribers.size === 0) return
    this.#refreshing = true
    try {
      const status = await this.#statusDocument()
      // RTTs, last-seen times and the load move every second; the status event is for changes.
      const text = JSON.stringify({ ...status, at: 0 }, (key, value: unknown) => VOLATILE_FIELDS.includes(key) ? undefined : value)
      if (text !== this.#lastStatus || Date.now() - this.#lastStatusAt >= STATUS_REFRESH_MS) {
        this.#lastStatus = text
        this.#lastStatusAt = Date.now()
        this.#send({ event: 'status', data: status })
      }
      const audit = await this.#audit()
      const seq = audit.at(-1)?.seq ?? 0
      if (seq !== this.#lastAuditSeq) {
        this.#lastAuditSeq = seq
        this.#send({ event: 'audit', data: audit })
      }
    } catch {
      // The node is stopping or a member is mid-change: the next tick tries again.
    } finally {
      this.#refreshing = false
    }
  }

  // Field by field: whatever else a record holds (request ids, key hashes) stays off the page.
  async #audit (): Promise<AuditSummary[]> {
    const records = await this.#source.recentAudit(AUDIT_RECORDS_SHOWN)
    return records.map(({ seq, time, model, promptTokens, completionTokens, durationMs, status }) => ({ seq, time, model, promptTokens, completionTokens, durationMs, status }))
  }

  async #statusDocument (): Promise<{ status: object, restarts: number, at: number }> {
    return { status: await this.#source.status(), restarts: await this.#source.restarts(), at: Date.now() }
  }

  #send (event: FeedEvent): void {
    for (const subscriber of this.#subscribers) subscriber(event)
  }
}
