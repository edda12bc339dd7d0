import './polyfill.js'
import { quic } from '@chainsafe/libp2p-quic'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { identify, identifyPush } from '@libp2p/identify'
import { mdns } from '@libp2p/mdns'
import { ping, type Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { tls } from '@libp2p/tls'
import { createLibp2p, type Libp2p } from 'libp2p'
import { AUTH_PROTOCOL, AUTH_TIMEOUT_MS } from '../protocols/auth/constants.js'
import { rpcTunnel, type RpcTunnel, type RpcTunnelBridgeInit } from '../protocols/rpc-tunnel/index.js'
import type { NativeSocketAddon } from '../protocols/rpc-tunnel/native-socket/addon.js'
import { meshNoise } from './connection-encrypter.js'
import { memberGate, type MemberGate } from './member-gate.js'
import { membersOnly } from './member-only-components.js'
import { privateDht } from './private-dht.js'
import { PROBE_MS } from './probe.js'
import { meshStreamMuxer } from './stream-muxer.js'
import type { Membership } from './membership.js'
import type { NodeMetrics } from './metrics.js'
import type { Datastore } from 'interface-datastore'
import type { PrivateKey } from '@libp2p/interface'
import type { KadDHT, SelectFn, ValidateFn } from '@libp2p/kad-dht'

/** Transport encryption; Noise by default, TLS 1.3 opt-in. */
export type Encryption = 'noise' | 'tls'

/** The libp2p services of a mesh node. */
export interface MeshServices extends Record<string, unknown> {
  identify: unknown
  identifyPush: unknown
  ping: Ping
  dht: KadDHT
  pubsub: GossipSub
  gate: MemberGate
  rpcTunnel: RpcTunnel
}

/** What a mesh node's libp2p peer is built from. */
export interface Libp2pNodeInit {
  privateKey: PrivateKey
  datastore: Datastore
  listen: string[]
  /** add the QUIC transport (opt-in; TCP is always present) */
  quic: boolean
  encryption: Encryption
  mdns: boolean
  membership: Membership
  metrics: NodeMetrics
  dhtValidators: Record<string, ValidateFn>
  dhtSelectors: Record<string, SelectFn>
  /** workers: the bridge that lets the coordinator reach the local rpc-server */
  rpcBridge?: RpcTunnelBridgeInit
  /** the tunnel's native socket addon (node/native-socket.ts); without it the tunnel runs on Node's sockets and TLS */
  nativeSockets?: NativeSocketAddon
}

/** Creates (but does not start) the libp2p peer of a mesh node. */
export async function createLibp2pNode (init: Libp2pNodeInit): Promise<Libp2p<MeshServices>> {
  const { membership, metrics } = init
  // Peers the CA revoked, or that just failed the handshake, are refused as soon as the
  // encryption handshake names them. Unknown peers get AUTH_TIMEOUT_MS to authenticate.
  const refuse = (peerId: { toString: () => string }): boolean => {
    const refused = membership.isRefused(peerId.toString())
    if (refused) metrics.refusedPeer('gater')
    return refused
  }
  const memberOnly = { membership, metrics, timeoutMs: AUTH_TIMEOUT_MS + 1000 }
  const encrypters = init.encryption === 'tls' ? [tls(), meshNoise()] : [meshNoise(), tls()]
  return createLibp2p({
    privateKey: init.privateKey,
    datastore: init.datastore,
    start: false,
    addresses: { listen: init.listen },
    transports: init.quic ? [tcp(), quic()] : [tcp()],
    connectionEncrypters: encrypters,
    streamMuxers: [meshStreamMuxer()],
    peerDiscovery: init.mdns ? [mdns({ serviceTag: 'llmesh.local' })] : [],
    connectionGater: {
      denyDialPeer: refuse,
      denyInboundEncryptedConnection: refuse,
      denyOutboundEncryptedConnection: refuse
    },
    // Pings every connection once a second (the failure detector's probe; it also gives
    // connection.rtt). Heartbeats decide death: aborting on one slow ping made connections
    // flap on a loaded machine.
    connectionMonitor: { pingInterval: PROBE_MS, abortConnectionOnPingFailure: false },
    connectionManager: {
      // Several nodes on one machine dial each other from 127.0.0.1; the default rate
      // limit of 5 inbound connections per second per host would reset them.
      allow: ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128']
    },
    services: {
      identify: identify(),
      identifyPush: identifyPush(),
      // A probe that outlives the next one would otherwise hit ping's one-stream limit.
      ping: ping({ maxOutboundStreams: 4, maxInboundStreams: 4 }),
      // Neither the DHT nor gossipsub sends a byte to a peer that has not authenticated as a member.
      dht: membersOnly(privateDht({ validators: init.dhtValidators, selectors: init.dhtSelectors, isMember: peer => membership.isMember(peer) }), memberOnly),
      pubsub: membersOnly(gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false }), memberOnly),
      rpcTunnel: rpcTunnel({ bridge: init.rpcBridge, registry: metrics.registry, nativeSockets: init.nativeSockets }),
      gate: memberGate({
        membership,
        metrics,
        open: [AUTH_PROTOCOL, '/ipfs/id/1.0.0', '/ipfs/id/push/1.0.0'],
        timeoutMs: AUTH_TIMEOUT_MS + 1000
      })
    }
  }) as unknown as Libp2p<MeshServices>
}
