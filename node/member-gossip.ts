import { TopicValidatorResult, type GossipSub, type Message } from '@libp2p/gossipsub'
import { isCapabilities, type Capabilities } from './capabilities.js'
import { parseCertificate, verifyCertificate, type Certificate } from './certificate.js'
import type { FailureDetector } from './failure-detector.js'
import type { Membership } from './membership.js'
import type { NodeMetrics } from './metrics.js'
import type { PeerId } from '@libp2p/interface'

/** Heartbeats: one per member per second. */
export const HEARTBEAT_TOPIC = 'llmesh/heartbeat/1'
/** Membership events: revocations and clean leaves. */
export const MEMBERSHIP_TOPIC = 'llmesh/membership/1'

/**
 * Every gossip message names its sender, carries the sender's certificate and a sequence
 * number: the sender's clock in ms, made strictly increasing, so that it keeps increasing
 * across the sender's restarts too.
 */
interface Envelope {
  peerId: string
  certificate: Certificate
  seq: number
  kind: 'heartbeat' | 'leave' | 'revocations'
  capabilities?: Capabilities
  revocations?: unknown
}

/**
 * How far a message's sequence number (its sender's clock) may lie from this node's clock, in
 * ms. Certificates already assume clocks within a minute of the coordinator's (they are
 * issued valid from a minute before). A replay older than this is refused even by a node that
 * never saw a newer message from that member.
 */
export const GOSSIP_MAX_SKEW_MS = 60_000

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** `ignore`: a stale or repeated message, dropped without blaming the relay (it may be honest). */
class GossipRejection extends Error {
  constructor (readonly reason: string, readonly ignore = false) {
    super(reason)
  }
}

/** What the gossip layer works with. */
export interface MemberGossipInit {
  pubsub: GossipSub
  membership: Membership
  detector: FailureDetector
  metrics: NodeMetrics
  capabilities: Capabilities
  /** heartbeat period (default 1000 ms) */
  heartbeatMs?: number
}

/**
 * Signed heartbeats and membership events over gossipsub. Messages whose signer is not a
 * member, or whose claimed sender is not the signer, are dropped and counted.
 */
export class MemberGossip {
  /** latest capabilities announced by each member */
  readonly capabilities = new Map<string, Capabilities>()
  private readonly init: MemberGossipInit
  /** `peerId sig` of certificates verified for that peer -> their notAfter */
  private readonly verified = new Map<string, number>()
  /** the highest sequence number accepted from each member */
  private readonly lastSeq = new Map<string, number>()
  /**
   * Messages signed before this node started are refused: gossipsub's seen-cache, which drops
   * a repeat for two minutes, starts empty, and so does lastSeq.
   */
  private readonly startedAt = Date.now()
  private seq = 0
  private timer: NodeJS.Timeout | undefined

  constructor (init: MemberGossipInit) {
    this.init = init
  }

  /** Subscribes, installs validators and starts heartbeats. */
  start (): void {
    const { pubsub } = this.init
    for (const topic of [HEARTBEAT_TOPIC, MEMBERSHIP_TOPIC]) {
      pubsub.topicValidators.set(topic, async (source, msg) => this.validate(source, msg))
      pubsub.subscribe(topic)
    }
    pubsub.addEventListener('message', (evt) => { this.onMessage(evt.detail) })
    this.timer = setInterval(() => { void this.publish(HEARTBEAT_TOPIC, { kind: 'heartbeat', capabilities: this.init.capabilities }) }, this.init.heartbeatMs ?? 1000)
  }

  /** Announces a clean shutdown and stops heartbeats. */
  async stop (): Promise<void> {
    clearInterval(this.timer)
    await this.publish(MEMBERSHIP_TOPIC, { kind: 'leave' })
  }

  /** Gossips a CA-signed revocation list (coordinator). */
  async publishRevocations (list: unknown): Promise<void> {
    await this.publish(MEMBERSHIP_TOPIC, { kind: 'revocations', revocations: list })
  }

  private async publish (topic: string, message: Pick<Envelope, 'kind' | 'capabilities' | 'revocations'>): Promise<void> {
    this.seq = Math.max(Date.now(), this.seq + 1)
    const envelope = { peerId: this.init.membership.peerId, certificate: this.init.membership.selfCertificate, seq: this.seq, ...message }
    // No subscribed peer yet is normal while the node starts alone.
    await this.init.pubsub.publish(topic, encoder.encode(JSON.stringify(envelope))).catch(() => {})
  }

  /**
   * The gossipsub topic validator: accepts only messages signed by a member about itself with
   * its own certificate, relayed by a member, newer than any accepted from that member.
   */
  async validate (source: PeerId, msg: Message): Promise<TopicValidatorResult> {
    try {
      await this.check(source, msg)
      return TopicValidatorResult.Accept
    } catch (err) {
      const reason = err instanceof GossipRejection ? err.reason : 'not-a-member'
      this.init.metrics.rejectedGossip(msg.topic, reason)
      return err instanceof GossipRejection && err.ignore ? TopicValidatorResult.Ignore : TopicValidatorResult.Reject
    }
  }

  private async check (source: PeerId, msg: Message): Promise<Envelope> {
    if (msg.type !== 'signed') throw new GossipRejection('unsigned')
    if (!this.init.membership.isAuthenticated(source.toString())) throw new GossipRejection('unauthenticated-relay')
    const envelope = decodeEnvelope(msg.data)
    const sender = envelope.peerId
    // gossipsub checked that the message is signed by msg.from's key.
    if (sender !== msg.from.toString()) throw new GossipRejection('spoofed-sender')
    if (envelope.certificate.body.peerId !== sender) throw new GossipRejection('wrong-peer')
    if (this.init.membership.isRevoked(sender)) throw new GossipRejection('revoked')
    await this.checkCertificate(sender, envelope.certificate)
    const now = Date.now()
    if (envelope.seq < Math.max(this.startedAt, now - GOSSIP_MAX_SKEW_MS)) throw new GossipRejection('stale', true)
    // A member whose clock runs ahead is no attacker, nor is whoever relayed its message.
    if (envelope.seq > now + GOSSIP_MAX_SKEW_MS) throw new GossipRejection('from-the-future', true)
    if (envelope.seq <= (this.lastSeq.get(sender) ?? -1)) throw new GossipRejection('replayed', true)
    this.lastSeq.set(sender, envelope.seq)
    return envelope
  }

  // Ed25519 verification per heartbeat is cheap, but a cache keeps it off the hot path. It is
  // keyed by the peer the certificate was verified for, so it never vouches for another.
  private async checkCertificate (peerId: string, certificate: Certificate): Promise<void> {
    const key = `${peerId} ${certificate.sig}`
    const notAfter = this.verified.get(key)
    if (notAfter !== undefined && Date.now() <= notAfter) return
    this.verified.delete(key)
    await verifyCertificate(certificate, peerId, this.init.membership.trust)
    this.verified.set(key, certificate.body.notAfter)
  }

  private onMessage (msg: Message): void {
    if (msg.topic !== HEARTBEAT_TOPIC && msg.topic !== MEMBERSHIP_TOPIC) return
    let envelope: Envelope
    try {
      envelope = decodeEnvelope(msg.data)
    } catch {
      return
    }
    const { detector, membership } = this.init
    switch (envelope.kind) {
      case 'heartbeat':
        if (envelope.capabilities !== undefined) this.capabilities.set(envelope.peerId, envelope.capabilities)
        membership.learn(envelope.certificate).catch(() => {
          // The datastore is closing with the node; the member is learnt again next time.
        })
        detector.seen(envelope.peerId)
        break
      case 'leave':
        detector.left(envelope.peerId)
        break
      case 'revocations':
        membership.applyRevocations(envelope.revocations).catch(() => { this.init.metrics.rejectedGossip(msg.topic, 'bad-revocations') })
        break
    }
  }
}

function decodeEnvelope (data: Uint8Array): Envelope {
  let value: Record<string, unknown>
  try {
    value = JSON.parse(decoder.decode(data))
  } catch {
    throw new GossipRejection('malformed')
  }
  if (typeof value !== 'object' || value === null || typeof value.peerId !== 'string' || !Number.isSafeInteger(value.seq) ||
    !['heartbeat', 'leave', 'revocations'].includes(value.kind as string) ||
    (value.capabilities !== undefined && !isCapabilities(value.capabilities))) {
    throw new GossipRejection('malformed')
  }
  try {
    return { ...value, certificate: parseCertificate(value.certificate) } as unknown as Envelope
  } catch {
    throw new GossipRejection('malformed')
  }
}
