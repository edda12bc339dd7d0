import { isPeerId, type Connection, type PeerId, type PeerStore, type Topology } from '@libp2p/interface'
import { UnauthenticatedPeerError } from './errors.js'
import type { Membership } from './membership.js'
import type { NodeMetrics } from './metrics.js'
import type { ConnectionManager, Registrar } from '@libp2p/interface-internal'

/** What the outbound side of the member gate needs. */
export interface MemberOnlyInit {
  membership: Membership
  metrics: NodeMetrics
  /** how long a new connection's peer may take to authenticate */
  timeoutMs: number
}

interface ServiceComponents {
  registrar: Registrar
  connectionManager: ConnectionManager
}

/**
 * The outbound half of the member gate (member-gate.ts guards inbound streams). A service
 * built on these components (the DHT, gossipsub) learns of a connected peer only once the
 * peer authenticated as a member, so it never opens a stream to a stranger to send it
 * subscriptions, gossip or DHT queries; and it opens streams on its own (the DHT's queries
 * and PUTs) only to peers this node holds a member certificate for, after they authenticated.
 * A service's peers otherwise come from identify: anyone who advertises the protocol.
 */
export function memberOnlyComponents<C extends ServiceComponents> (components: C, init: MemberOnlyInit): C {
  const { membership, metrics, timeoutMs } = init
  // One count per connection, however many protocols of how many services waited on it.
  const counted = new WeakSet<Connection>()
  const refuse = (connection: Connection | undefined, reason: string): void => {
    if (connection !== undefined && counted.has(connection)) return
    if (connection !== undefined) counted.add(connection)
    metrics.refusedPeer(reason)
  }
  const registrar = new Proxy(components.registrar, {
    get (target, prop, receiver) {
      if (prop !== 'register') return Reflect.get(target, prop, receiver)
      return async (protocol: string, topology: Topology) => target.register(protocol, {
        ...topology,
        onConnect: (peerId: PeerId, connection: Connection) => {
          void membership.waitAuthenticated(peerId.toString(), timeoutMs).then(async authenticated => {
            if (!authenticated) {
              refuse(connection, 'unauthenticated-outbound')
              return
            }
            if (connection.status === 'open') await topology.onConnect?.(peerId, connection)
          }).catch(() => {})
        }
      })
    }
  })
  const connectionManager = new Proxy(components.connectionManager, {
    get (target, prop, receiver) {
      if (prop !== 'openStream') return Reflect.get(target, prop, receiver)
      const openStream: ConnectionManager['openStream'] = async (peer, protocol, options) => {
        if (!isPeerId(peer) || !membership.isMember(peer.toString())) {
          refuse(undefined, 'non-member-dial')
          throw new UnauthenticatedPeerError(String(peer))
        }
        const connection = await target.openConnection(peer, options)
        if (!await membership.waitAuthenticated(peer.toString(), timeoutMs)) {
          refuse(connection, 'unauthenticated-outbound')
          throw new UnauthenticatedPeerError(peer.toString())
        }
        return connection.newStream(protocol, options)
      }
      return openStream
    }
  })
  return new Proxy(components, {
    get (target, prop, receiver) {
      if (prop === 'registrar') return registrar
      if (prop === 'connectionManager') return connectionManager
      return Reflect.get(target, prop, receiver)
    }
  })
}

/** Wraps a libp2p service factory so that the service gets member-only components. */
export function membersOnly<C extends ServiceComponents, S> (factory: (components: C) => S, init: MemberOnlyInit): (components: C) => S {
  return (components) => factory(memberOnlyComponents(components, init))
}

/**
 * Removes every peer that is no member from the peer store: at start (a peer store persisted by
 * an older version may hold strangers tagged keep-alive, which libp2p dials as it starts) and
 * when a stranger disconnects (identify stored its addresses; nothing may dial them again).
 */
export async function forgetNonMembers (peerStore: PeerStore, membership: Membership, only?: PeerId): Promise<void> {
  const peers = only === undefined ? (await peerStore.all()).map(p => p.id) : [only]
  for (const id of peers) {
    if (!membership.isMember(id.toString())) await peerStore.delete(id).catch(() => {})
  }
}
