import { EventEmitter } from 'node:events'

/** How a member looks from this node. */
export type MemberState = 'alive' | 'suspect' | 'dead' | 'revoked'

/** Events later issues (scheduler, recovery) subscribe to. */
export interface LivenessEvents {
  /** a member became reachable: first contact, or back after being dead */
  join: [peerId: string]
  /** a member announced a clean shutdown */
  leave: [peerId: string]
  /** a member missed probes for `silentMs` and is presumed dead */
  dead: [peerId: string, silentMs: number]
  /** a member was declared dead on other evidence than silence, e.g. a stalled tunnel */
  failed: [peerId: string, reason: string]
  /** a member missed a few probes or lost its connection */
  suspect: [peerId: string]
  /** the CA revoked a member */
  revoked: [peerId: string]
}

/** Timing of the detector, after memberlist's LAN profile. */
export interface FailureDetectorInit {
  /** silence after which a member is suspect (default 2500 ms: two to three missed 1 s probes) */
  suspectAfterMs?: number
  /** silence after which a member is dead (default 4000 ms: memberlist's LAN suspicion time) */
  deadAfterMs?: number
  /** how often states are re-evaluated (default 250 ms) */
  tickMs?: number
}

interface Entry {
  state: MemberState
  lastSeen: number
  /** contacts before this time (ms since the epoch) are ignored: the member failed and is held off */
  heldOffUntil?: number
}

/**
 * Turns contacts (heartbeats, pings, connections) into member states and emits
 * join/leave/suspect/dead/revoked events.
 */
export class FailureDetector extends EventEmitter<LivenessEvents> {
  private readonly members = new Map<string, Entry>()
  private readonly suspectAfterMs: number
  private readonly deadAfterMs: number
  private readonly tickMs: number
  private timer: NodeJS.Timeout | undefined

  constructor (init: FailureDetectorInit = {}) {
    super()
    this.suspectAfterMs = init.suspectAfterMs ?? 2500
    this.deadAfterMs = init.deadAfterMs ?? 4000
    this.tickMs = init.tickMs ?? 250
  }

  /** Starts re-evaluating states. */
  start (): void {
    this.timer = setInterval(() => { this.tick(Date.now()) }, this.tickMs)
  }

  /** Stops the timer. */
  stop (): void {
    clearInterval(this.timer)
  }

  /** Records a sign of life from `peerId`. */
  seen (peerId: string, now = Date.now()): void {
    const entry = this.members.get(peerId)
    if (entry?.state === 'revoked') return
    if (entry?.heldOffUntil !== undefined && now < entry.heldOffUntil) return
    if (entry === undefined || entry.state === 'dead') {
      this.members.set(peerId, { state: 'alive', lastSeen: now })
      this.emit('join', peerId)
      return
    }
    entry.lastSeen = now
    entry.state = 'alive'
  }

  /** Marks a member suspect at once, e.g. when its last connection closed. */
  suspect (peerId: string): void {
    const entry = this.members.get(peerId)
    if (entry?.state !== 'alive') return
    entry.state = 'suspect'
    this.emit('suspect', peerId)
  }

  /**
   * Declares a member dead at once on evidence other than silence (its heartbeats may still
   * come while its tunnel is stuck); its contacts are ignored for `holdOffMs`, so that it is
   * not planned in again at its next heartbeat.
   */
  fail (peerId: string, reason: string, holdOffMs: number, now = Date.now()): void {
    const entry = this.members.get(peerId)
    if (entry === undefined || entry.state === 'revoked') return
    entry.heldOffUntil = now + holdOffMs
    if (entry.state === 'dead') return
    entry.state = 'dead'
    this.emit('failed', peerId, reason)
  }

  /** Records a clean shutdown announced by the member. */
  left (peerId: string): void {
    const entry = this.members.get(peerId)
    if (entry === undefined || entry.state === 'revoked' || entry.state === 'dead') return
    entry.state = 'dead'
    this.emit('leave', peerId)
  }

  /** Records a revocation; a revoked member never comes back. */
  revoked (peerId: string): void {
    const entry = this.members.get(peerId)
    if (entry?.state === 'revoked') return
    this.members.set(peerId, { state: 'revoked', lastSeen: entry?.lastSeen ?? 0 })
    this.emit('revoked', peerId)
  }

  /** The member's state, or undefined when never seen. */
  state (peerId: string): MemberState | undefined {
    return this.members.get(peerId)?.state
  }

  /** When the member was last seen (ms since the epoch), if ever. */
  lastSeen (peerId: string): number | undefined {
    const t = this.members.get(peerId)?.lastSeen
    return t === 0 ? undefined : t
  }

  /** Re-evaluates every member against the clock. */
  tick (now: number): void {
    for (const [peerId, entry] of this.members) {
      if (entry.state !== 'alive' && entry.state !== 'suspect') continue
      const silent = now - entry.lastSeen
      if (silent >= this.deadAfterMs) {
        entry.state = 'dead'
        this.emit('dead', peerId, silent)
      } else if (silent >= this.suspectAfterMs && entry.state === 'alive') {
        entry.state = 'suspect'
        this.emit('suspect', peerId)
      }
    }
  }
}
