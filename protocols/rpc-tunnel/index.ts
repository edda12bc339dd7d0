/**
 * The ggml-rpc tunnel, `/llmesh/rpc/1.0.0`: carries llama.cpp RPC traffic between the
 * coordinator's llama-server and a worker's rpc-server over authenticated libp2p streams.
 *
 * On a worker, the bridge admits tunnel streams from the coordinator only, validates every
 * request (command, size, HELLO first) before it reaches the rpc-server on 127.0.0.1, times
 * out stalled messages and counts bytes and time per command. On the coordinator, one
 * listener on 127.0.0.1 per worker stands in for that worker's rpc-server.
 */
import { RpcTunnel as RpcTunnelClass } from './rpc-tunnel.js'
import type { ComponentLogger, PeerId } from '@libp2p/interface'
import type { ConnectionManager, Registrar } from '@libp2p/interface-internal'
import type { Registry } from 'prom-client'

export interface RpcTunnel {
  /** Coordinator: opens a listener on 127.0.0.1 whose connections are tunnelled to `worker`; returns the `host:port` for llama-server's `--rpc`. */
  openListener: (worker: PeerId) => Promise<string>
  /** Coordinator: closes every listener and the tunnel streams they carry. */
  closeListeners: () => Promise<void>
  /** the registry holding the tunnel's metrics */
  readonly registry: Registry
}

/** The worker side: where rpc-server is and who may reach it. */
export interface RpcTunnelBridgeInit {
  /** true when `peer` is the cluster's coordinator, by its certificate's role; every other peer is refused */
  authorize: (peer: PeerId) => boolean | Promise<boolean>
  /** the port of this worker's rpc-server on 127.0.0.1, undefined while it is not running */
  rpcServerPort: () => number | undefined
  /** the largest request payload to let through, from the plan: `messageCapFor(largestTensorBytes)` */
  maxMessageBytes: () => number
}

export interface RpcTunnelInit {
  /** serve tunnel streams to a local rpc-server (workers); leave out on a coordinator */
  bridge?: RpcTunnelBridgeInit
  /** close a stream whose request stalls part-way this long, in ms (default 30 s) */
  idleReadTimeoutMs?: number
  /** how long opening a tunnel stream to a worker may take, in ms (default 10 s) */
  openStreamTimeoutMs?: number
  /** the node's prom-client registry for the tunnel's metrics (default: a registry of its own) */
  registry?: Registry
  /** tunnel streams per connection (default 4 each way) */
  maxInboundStreams?: number
  maxOutboundStreams?: number
}

export interface RpcTunnelComponents {
  registrar: Registrar
  connectionManager: ConnectionManager
  logger: ComponentLogger
}

/** The libp2p service factory of the ggml-rpc tunnel. */
export function rpcTunnel (init: RpcTunnelInit = {}): (components: RpcTunnelComponents) => RpcTunnel {
  return (components) => new RpcTunnelClass(components, init)
}

export { RPC_TUNNEL_PROTOCOL } from './constants.js'
export { messageCapFor } from './message-cap.js'
export * from './errors.js'
