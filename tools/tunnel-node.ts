// Bare libp2p peers carrying only the RPC tunnel: `mesh bench cluster` and the tunnel tests run
// the tunnel between these, without the membership layer of a full mesh node.
import '../node/polyfill.js'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { meshNoise } from '../node/connection-encrypter.js'
import { meshStreamMuxer } from '../node/stream-muxer.js'
import { rpcTunnel, type RpcTunnel, type RpcTunnelInit } from '../protocols/rpc-tunnel/index.js'

export type TunnelNode = Libp2p<{ rpcTunnel: RpcTunnel }>

/** A bare libp2p peer (TCP, Noise, yamux on 127.0.0.1) carrying only the RPC tunnel service. */
export async function startTunnelNode (init: RpcTunnelInit = {}): Promise<TunnelNode> {
  return await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [meshNoise()],
    streamMuxers: [meshStreamMuxer()],
    connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'] },
    services: { rpcTunnel: rpcTunnel(init) }
  })
}
