// Bare libp2p peers on 127.0.0.1, without the membership layer of a full mesh node:
// `mesh bench cluster` and the tunnel tests run the RPC tunnel between these, and unit tests
// run single services (the private DHT, say) on them.
import '../node/polyfill.js'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p, type ServiceFactoryMap } from 'libp2p'
import { meshNoise } from '../node/connection-encrypter.js'
import { meshStreamMuxer } from '../node/stream-muxer.js'
import { rpcTunnel, type RpcTunnel, type RpcTunnelInit } from '../protocols/rpc-tunnel/index.js'
import type { ServiceMap } from '@libp2p/interface'

export type TunnelNode = Libp2p<{ rpcTunnel: RpcTunnel }>

/** A bare libp2p peer (TCP, llmesh's Noise and yamux, on 127.0.0.1) running `services`. */
export async function startLoopbackPeer<T extends ServiceMap> (services: ServiceFactoryMap<T>): Promise<Libp2p<T>> {
  return await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [meshNoise()],
    streamMuxers: [meshStreamMuxer()],
    connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'] },
    services
  })
}

/** A bare libp2p peer carrying only the RPC tunnel service. */
export async function startTunnelNode (init: RpcTunnelInit = {}): Promise<TunnelNode> {
  return await startLoopbackPeer({ rpcTunnel: rpcTunnel(init) })
}
