// Bare libp2p peers on 127.0.0.1, without the membership layer of a full mesh node:
// `mesh bench cluster` and the tunnel tests run the RPC tunnel between these, and unit tests
// run single services (the private DHT, say) on them.
import '../node/polyfill.js'
import { quic } from '@chainsafe/libp2p-quic'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p, type ServiceFactoryMap } from 'libp2p'
import { meshNoise } from '../node/connection-encrypter.js'
import { nativeSockets } from '../node/native-socket.js'
import { meshStreamMuxer } from '../node/stream-muxer.js'
import { rpcTunnel, type RpcTunnel, type RpcTunnelInit } from '../protocols/rpc-tunnel/index.js'
import type { ServiceMap } from '@libp2p/interface'

export type TunnelNode = Libp2p<{ rpcTunnel: RpcTunnel }>

/** The transports a loopback peer listens and dials on: TCP (with llmesh's Noise and yamux) and optionally QUIC. */
export type LoopbackTransports = 'tcp' | 'tcp+quic'

/** A bare libp2p peer (TCP, llmesh's Noise and yamux, on 127.0.0.1; QUIC as well if asked) running `services`. */
export async function startLoopbackPeer<T extends ServiceMap> (services: ServiceFactoryMap<T>, transports: LoopbackTransports = 'tcp'): Promise<Libp2p<T>> {
  const withQuic = transports === 'tcp+quic'
  return await createLibp2p({
    addresses: { listen: withQuic ? ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/udp/0/quic-v1'] : ['/ip4/127.0.0.1/tcp/0'] },
    transports: withQuic ? [tcp(), quic()] : [tcp()],
    connectionEncrypters: [meshNoise()],
    streamMuxers: [meshStreamMuxer()],
    connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'] },
    services
  })
}

/** A bare libp2p peer carrying only the RPC tunnel service; its data channel's TLS is native where the addon builds, unless `init` says otherwise. */
export async function startTunnelNode (init: RpcTunnelInit = {}, transports: LoopbackTransports = 'tcp'): Promise<TunnelNode> {
  return await startLoopbackPeer({ rpcTunnel: rpcTunnel({ nativeSockets: nativeSockets().addon, ...init }) }, transports)
}

/** How the tunnel carries sessions: the TLS data channel beside libp2p, or libp2p tunnel streams only. */
export type TunnelCarrier = 'data-channel' | 'libp2p'

/** The sessions `node`'s tunnel opened or bridged so far, by carrier, from its metrics. */
export async function sessionCounts (node: TunnelNode): Promise<Partial<Record<TunnelCarrier, number>>> {
  const metric = node.services.rpcTunnel.registry.getSingleMetric('llmesh_rpc_sessions_total')
  const values = (await metric?.get())?.values ?? []
  return Object.fromEntries(values.map(v => [v.labels.carrier, v.value]))
}

/** The carriers `node`'s tunnel opened sessions over so far (both when some fell back). */
export async function sessionCarriers (node: TunnelNode): Promise<TunnelCarrier[]> {
  return Object.entries(await sessionCounts(node)).filter(([, count]) => count > 0).map(([carrier]) => carrier as TunnelCarrier).sort()
}
