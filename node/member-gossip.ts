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

/** Every gossip message names its sender and carries the sender's certificate. */
interface Envelope {
  peerId: string
  certificate: Certificate
  kind: 'heartbeat' | 'leave' | 'revocations'
  capabilities?: Capabilities
  revocations?: unknown
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

class GossipRejection extends Error {
  constructor (readonly reason: string) {
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
  private readonly verified = new Set<string>()
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
    const envelope = { peerId: this.init.membership.peerId, certificate: this.init.membership.selfCertificate, ...message }
    // No subscribed peer yet is normal while the node starts alone.
    await this.init.pubsub.publish(topic, encoder.encode(JSON.stringify(envelope))).catch(() => {})
  }

  /** The gossipsub topic validator: accepts only messages signed by a member about itself, relayed by a member. */
  async validate (source: PeerId, msg: Message): Promise<TopicValidatorResult> {
    try {
      await this.check(source, msg)
      return TopicValidatorResult.Accept
    } catch (err) {
      const reason = err instanceof GossipRejection ? err.reason : 'not-a-member'
      this.init.metrics.rejectedGossip(msg.topic, reason)
      return TopicValidatorResult.Reject
    }
  }

  private async check (source: PeerId, msg: Message): Promise<Envelope> {
    if (msg.type !== 'signed') throw new GossipRejection('unsigned')
    if (!this.init.membership.isAuthenticated(source.toString())) throw new GossipRejection('unauthenticated-relay')
    const envelope = decodeEnvelope(msg.data)
    if (envelope.peerId !== msg.from.toString()) throw new GossipRejection('spoofed-sender')
    if (this.init.membership.isRevoked(envelope.peerId)) throw new GossipRejection('revoked')
    // Ed25519 verification per heartbeat is cheap, but a cache keeps it off the hot path.
    if (!this.verified.has(envelope.certificate.sig)) {
      await verifyCertificate(envelope.certificate, envelope.peerId, this.init.membership.trust)
      this.verified.add(envelope.certificate.sig)
    }
    return envelope
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
  if (typeof value !== 'object' || value === null || typeof value.peerId !== 'string' ||
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
