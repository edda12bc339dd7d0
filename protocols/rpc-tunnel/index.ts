/**
 * The ggml-rpc tunnel, `/llmesh/rpc/2.0.0`: carries llama.cpp RPC traffic between the
 * coordinator's llama-server and a worker's rpc-server, over a TLS data channel whose keys
 * the two sides exchange on authenticated libp2p streams (data-channel.ts), or over those
 * libp2p streams themselves where the channel cannot be used.
 *
 * On a worker, the bridge admits tunnel streams from the coordinator only, validates every
 * request (command, size, HELLO first) before it reaches the rpc-server on 127.0.0.1, times
 * out stalled messages and counts bytes and time per command, and keeps the tensors it passes
 * in a cache so that reloading a plan need not send them again. On the coordinator, one
 * listener on 127.0.0.1 per worker stands in for that worker's rpc-server.
 */
import { RpcTunnel as RpcTunnelClass } from './rpc-tunnel.js'
import type { ComponentLogger, PeerId, PeerStore } from '@libp2p/interface'
import type { AddressManager, ConnectionManager, Registrar } from '@libp2p/interface-internal'
import type { Registry } from 'prom-client'
import type { NativeSocketAddon } from './native-socket/addon.js'
import type { RelayedCommand } from './native-relay.js'

/** Coordinator: how one worker's listener reports a worker that fails its sessions. */
export interface TunnelListenerOptions {
  /** called when a tunnel stream to the worker cannot be opened, the worker stops answering (RpcWorkerStalledError) or ends a session llama-server still uses (RpcSessionEndedByWorkerError) */
  onFailure?: (err: Error) => void
  /** sees every session's bytes, for per-worker metrics (a new observer per llama-server connection) */
  traffic?: () => TunnelTraffic
  /**
   * the largest ggml-rpc request the worker's stage of the plan carries, `messageCapFor(largestStageTensorBytes(...))`:
   * told to the worker before the listener opens, with the data channel's keys; left out, the
   * worker applies its default (DEFAULT_MESSAGE_CAP_BYTES) and sessions go in tunnel streams
   */
  maxMessageBytes?: number
}

/** Coordinator: observes the bytes of one tunnel session; must not throw. */
export interface TunnelTraffic {
  /** bytes llama-server sent toward the worker */
  request: (chunk: Uint8Array) => void
  /** bytes the worker sent back */
  response: (chunk: Uint8Array) => void
  /**
   * the commands of a session relayed natively once its weights are loaded (its bytes then no
   * longer pass here), in the order they finished; an observer without it, which needs the
   * bytes themselves, keeps every session in JavaScript
   */
  relayed?: (command: RelayedCommand) => void
}


export interface RpcTunnel {
  /** Coordinator: opens a listener on 127.0.0.1 whose connections are tunnelled to `worker`; returns the `host:port` for llama-server's `--rpc`. */
  openListener: (worker: PeerId, options?: TunnelListenerOptions) => Promise<string>
  /** Coordinator: closes the listener at `endpoint` (as openListener returned it) and the tunnel streams it carries; one replica group's. */
  closeListener: (endpoint: string) => Promise<void>
  /** Coordinator: closes every listener and the tunnel streams they carry. */
  closeListeners: () => Promise<void>
  /** Worker: the TCP port of its data channel, undefined where it has none. */
  readonly dataChannelPort: number | undefined
  /** Worker: the largest request payload the bridge lets through from `coordinator`, as it last set it. */
  messageCap: (coordinator: PeerId) => number
  /** the registry holding the tunnel's metrics */
  readonly registry: Registry
}

/** The worker side: where rpc-server is and who may reach it. */
export interface RpcTunnelBridgeInit {
  /** true when `peer` is the cluster's coordinator, by its certificate's role; every other peer is refused */
  authorize: (peer: PeerId) => boolean | Promise<boolean>
  /** the port of this worker's rpc-server on 127.0.0.1, undefined while it is not running */
  rpcServerPort: () => number | undefined
  /**
   * the most a coordinator may set the message cap to: `messageCapFor(offered memory)`, since
   * no plan puts more on this worker; until a coordinator sets one, DEFAULT_MESSAGE_CAP_BYTES applies
   */
  messageCapCeiling: () => number
  /**
   * where to keep the data of the weights that pass whole (rpc-server keeps none: it runs without `--cache`),
   * so that a reload of the plan does not send them again; `maxBytes` is asked before each
   * engine start, when files beyond it are removed. Left out, every load sends every tensor.
   */
  tensorCache?: { dir: string, maxBytes: () => number }
  /** the TCP port of the data channel, on the hosts libp2p listens on (default 0: a free port) */
  dataChannelPort?: number
  /**
   * the worker's own log (what `mesh start` prints): one line for every tunnel stream the bridge
   * ends, naming why and never anything the stream carried; a warning where the session ended
   * otherwise than by the coordinator closing it
   */
  nodeLog?: (level: 'debug' | 'warn', message: string) => void
}

export interface RpcTunnelInit {
  /** serve tunnel streams to a local rpc-server (workers); leave out on a coordinator */
  bridge?: RpcTunnelBridgeInit
  /** close a stream whose request stalls part-way this long, in ms (default 30 s) */
  idleReadTimeoutMs?: number
  /** coordinator: close a stream, and report the worker, when it answers nothing this long while llama-server waits, in ms (default 30 s) */
  responseTimeoutMs?: number
  /** how long opening a tunnel stream to a worker may take, in ms (default 10 s) */
  openStreamTimeoutMs?: number
  /** the node's prom-client registry for the tunnel's metrics (default: a registry of its own) */
  registry?: Registry
  /**
   * carry sessions over a TLS data channel beside libp2p, set up through the plan's cap
   * exchange (default true); sessions fall back to tunnel streams wherever it cannot be used
   */
  dataChannel?: boolean
  /**
   * the tunnel's sockets in native code (native-socket/addon.ts, built by the node layer): the
   * data channel's TLS, and the local connections to llama-server and rpc-server; without it
   * they are Node sockets
   */
  nativeSockets?: NativeSocketAddon
  /** tunnel streams per connection (default 4 each way) */
  maxInboundStreams?: number
  maxOutboundStreams?: number
}

export interface RpcTunnelComponents {
  registrar: Registrar
  addressManager: AddressManager
  connectionManager: ConnectionManager
  peerStore: PeerStore
  logger: ComponentLogger
}

/** The libp2p service factory of the ggml-rpc tunnel. */
export function rpcTunnel (init: RpcTunnelInit = {}): (components: RpcTunnelComponents) => RpcTunnel {
  return (components) => new RpcTunnelClass(components, init)
}

export { DEFAULT_MESSAGE_CAP_BYTES, RPC_CAP_PROTOCOL, RPC_TUNNEL_PROTOCOL } from './constants.js'
export { messageCapFor } from './message-cap.js'
export type { RelayedCommand } from './native-relay.js'
export * from './errors.js'
