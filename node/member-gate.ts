import { UnauthenticatedPeerError } from './errors.js'
import type { Membership } from './membership.js'
import type { NodeMetrics } from './metrics.js'
import type { StreamHandler, Startable } from '@libp2p/interface'
import type { Registrar } from '@libp2p/interface-internal'

/**
 * Wraps a stream handler so that it only runs for authenticated members. A stream that
 * arrives while its peer's handshake is still running waits up to `timeoutMs` for it.
 */
export function requireMember (handler: StreamHandler, membership: Membership, metrics: NodeMetrics, timeoutMs: number): StreamHandler {
  return async (stream, connection) => {
    const peer = connection.remotePeer.toString()
    if (!membership.isAuthenticated(peer) && !await membership.waitAuthenticated(peer, timeoutMs)) {
      metrics.refusedPeer('unauthenticated-stream')
      stream.abort(new UnauthenticatedPeerError(peer))
      return
    }
    await handler(stream, connection)
  }
}

/** What the gate needs to know. */
export interface MemberGateInit {
  membership: Membership
  metrics: NodeMetrics
  /** protocols that unauthenticated peers may use (the auth handshake, identify) */
  open: string[]
  timeoutMs: number
}

/**
 * A libp2p service that, once every service has registered its handlers, wraps all of
 * them except `open` with requireMember: the DHT, gossipsub and ping never answer a peer
 * without a valid certificate.
 */
export class MemberGate implements Startable {
  private readonly registrar: Registrar
  private readonly init: MemberGateInit
  /** the protocols this gate wrapped */
  readonly gated: string[] = []

  constructor (components: { registrar: Registrar }, init: MemberGateInit) {
    this.registrar = components.registrar
    this.init = init
  }

  start (): void {}

  async afterStart (): Promise<void> {
    for (const protocol of this.registrar.getProtocols()) {
      if (this.init.open.includes(protocol)) continue
      const { handler, options } = this.registrar.getHandler(protocol)
      await this.registrar.handle(protocol, requireMember(handler, this.init.membership, this.init.metrics, this.init.timeoutMs), { ...options, force: true })
      this.gated.push(protocol)
    }
  }

  stop (): void {}
}

/** The libp2p service factory of MemberGate. */
export function memberGate (init: MemberGateInit): (components: { registrar: Registrar }) => MemberGate {
  return (components) => new MemberGate(components, init)
}
