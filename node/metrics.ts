import { Counter, Registry } from 'prom-client'

/**
 * The node's own prom-client registry (never the global one: several nodes may share a
 * process in tests) and the counters of everything it refused.
 */
export class NodeMetrics {
  readonly registry = new Registry()
  private readonly frames: Counter
  private readonly gossip: Counter
  private readonly refusals: Counter
  private readonly restarts: Counter
  private readonly redemptions: Counter
  private readonly records: Counter

  constructor () {
    this.frames = new Counter({ name: 'llmesh_rejected_frames_total', help: 'Frames rejected by llmesh protocols, by protocol and reason', labelNames: ['protocol', 'reason'], registers: [this.registry] })
    this.gossip = new Counter({ name: 'llmesh_rejected_gossip_total', help: 'Gossip messages dropped, by topic and reason', labelNames: ['topic', 'reason'], registers: [this.registry] })
    this.refusals = new Counter({ name: 'llmesh_refused_peers_total', help: 'Peers refused by the auth handshake (either direction), the connection gater, or the DHT and gossipsub before they authenticated, by reason', labelNames: ['reason'], registers: [this.registry] })
    this.restarts = new Counter({ name: 'llmesh_engine_restarts_total', help: 'llama-server or rpc-server restarts after the process exited on its own, by process', labelNames: ['process'], registers: [this.registry] })
    this.redemptions = new Counter({ name: 'llmesh_failed_invite_redemptions_total', help: 'Invite redemptions the coordinator refused, by reason (rate-limited: refused unheard after too many failures from one address)', labelNames: ['reason'], registers: [this.registry] })
    this.records = new Counter({ name: 'llmesh_rejected_dht_records_total', help: 'DHT records refused by the record validator, by reason (stale: older than one already seen)', labelNames: ['reason'], registers: [this.registry] })
    // Zero series from the start, so that rate() and alerts see the first restart.
    for (const process of ['llama-server', 'rpc-server']) this.restarts.inc({ process }, 0)
  }

  /** Counts a restart of llama-server or rpc-server; their supervisors call it. */
  engineRestarted (process: 'llama-server' | 'rpc-server'): void {
    this.restarts.inc({ process })
  }

  /** Counts a frame that a protocol rejected. */
  rejectedFrame (protocol: string, reason: string): void {
    this.frames.inc({ protocol, reason })
  }

  /** Counts a gossip message that was dropped. */
  rejectedGossip (topic: string, reason: string): void {
    this.gossip.inc({ topic, reason })
  }

  /** Counts a failed invite redemption. */
  failedRedemption (reason: string): void {
    this.redemptions.inc({ reason })
  }

  /** Counts a DHT record the validator refused. */
  rejectedRecord (reason: string): void {
    this.records.inc({ reason })
  }

  /** Counts a refused peer. */
  refusedPeer (reason: string): void {
    this.refusals.inc({ reason })
  }

  /** Prometheus text exposition of this node's metrics. */
  async text (): Promise<string> {
    return this.registry.metrics()
  }
}
