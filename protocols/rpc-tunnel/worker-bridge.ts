import { CommandMeter } from './command-meter.js'
import { CreditStream } from './credit-stream.js'
import { RpcIdleReadTimeoutError, RpcServerUnavailableError, RpcTunnelError, RpcTunnelRefusedError } from './errors.js'
import { connectLocal } from './local-connection.js'
import { relayWorkerSession } from './native-relay.js'
import { pipeLocalAndTunnel } from './pipe.js'
import { TunnelResetError, type LocalEnd, type TunnelEnd } from './tunnel-end.js'
import { RESPONSE_HEADER_BYTES } from './ggml-rpc.js'
import { observeAll, RpcRequestValidator, SET_TENSOR_HASH_HELD_RESPONSE } from './request-validator.js'
import { RpcResponseReader } from './response-reader.js'
import { WeightLoading } from './weight-loading.js'
import type { RpcTunnelMetrics } from './metrics.js'
import type { NativeSocketAddon } from './native-socket/addon.js'
import type { TensorCache } from './tensor-cache.js'
import type { Connection, Logger, PeerId, Stream } from '@libp2p/interface'

/** What the worker bridge needs; the tunnel service fills it in from its init options. */
export interface WorkerBridgeInit {
  /** true when `peer` is the cluster's coordinator, by its certificate's role */
  authorize: (peer: PeerId) => boolean | Promise<boolean>
  /** the port of this worker's rpc-server on 127.0.0.1, undefined while it is not running */
  rpcServerPort: () => number | undefined
  /** largest request payload let through from `coordinator`, in bytes */
  maxMessageBytes: (coordinator: PeerId) => number
  idleReadTimeoutMs: number
  /** keeps tensor data that passes whole and expands SET_TENSOR_CACHED; without it, SET_TENSOR_CACHED is refused */
  tensorCache?: TensorCache
  metrics: RpcTunnelMetrics
  log: Logger
  /** the worker's own log: told why each tunnel stream ended (see RpcTunnelBridgeInit) */
  nodeLog?: (level: 'debug' | 'warn', message: string) => void
  /** moves the connections to rpc-server in native code where given */
  native?: NativeSocketAddon
}

/**
 * Handles one tunnel stream on a worker: admits only the coordinator, then bridges the session
 * to the local rpc-server.
 */
export async function bridgeTunnelStream (init: WorkerBridgeInit, stream: Stream, connection: Connection): Promise<void> {
  await bridgeSession(init, new CreditStream(stream), connection.remotePeer, 'tunnel stream', 'libp2p')
}

/**
 * Handles one session on the worker's data channel, whose client proved the key that
 * `coordinator` named in its cap exchange: checks again that it is the coordinator (its
 * certificate may have been revoked since), then bridges the session to the local rpc-server.
 */
export async function bridgeDataChannel (init: WorkerBridgeInit, session: TunnelEnd, coordinator: PeerId): Promise<void> {
  await bridgeSession(init, session, coordinator, 'tunnel data channel session', 'data-channel')
}

/**
 * Admits only the coordinator, connects to the local rpc-server, and pipes the session both
 * ways, validating every request before it reaches rpc-server and timing every command.
 */
async function bridgeSession (init: WorkerBridgeInit, tunnel: TunnelEnd, peer: PeerId, what: string, carrier: 'data-channel' | 'libp2p'): Promise<void> {
  // Every end of a session is logged with its reason: a coordinator only sees its carrier
  // closed or reset, and llama-server only that its RPC server went away.
  const ended = (level: 'debug' | 'warn', why: string): void => {
    init.log('%s from %p %s', what, peer, why)
    init.nodeLog?.(level, `${what} from ${peer.toString()} ${why}`)
  }
  const refuse = (err: RpcTunnelError): void => {
    init.metrics.refused(err.reason)
    ended('warn', `refused: ${err.message}`)
    tunnel.abort(err)
  }
  // A failing membership lookup must refuse, never admit.
  const admitted = await Promise.resolve().then(async () => await init.authorize(peer)).catch(() => false)
  if (!admitted) {
    refuse(new RpcTunnelRefusedError(peer.toString()))
    return
  }
  const port = init.rpcServerPort()
  if (port === undefined) {
    refuse(new RpcServerUnavailableError('it is not running'))
    return
  }
  let local: LocalEnd
  try {
    local = await connectLocal(port, init.native)
  } catch (err) {
    refuse(new RpcServerUnavailableError((err as Error).message))
    return
  }
  init.metrics.session(carrier)
  // Which side closed first, for a session that ended without an error.
  let closedFirstBy: 'the coordinator' | 'rpc-server' | undefined
  tunnel.onEnd(() => { closedFirstBy ??= 'the coordinator' })
  local.onEnd(() => { closedFirstBy ??= 'rpc-server' })
  const meter = new CommandMeter(init.metrics)
  const cache = init.tensorCache?.session()
  const weights = new WeightLoading()
  const loading = { requestStart: (command: number) => { weights.request(command) }, requestEnd: () => {} }
  const observer = cache === undefined ? observeAll(meter, loading) : observeAll(meter, loading, cache.observer)
  // A SET_TENSOR_HASH the cache answered: the client waits for this answer alone (ggml-rpc has
  // one request with a response in flight at most), so it cannot overtake rpc-server's answers.
  const hashAnswered = (): void => {
    tunnel.send(SET_TENSOR_HASH_HELD_RESPONSE)
    meter.responseEnd(SET_TENSOR_HASH_HELD_RESPONSE.byteLength - RESPONSE_HEADER_BYTES)
  }
  const maxMessageBytes = init.maxMessageBytes(peer)
  const validator = new RpcRequestValidator(maxMessageBytes, observer, cache?.source, hashAnswered)
  const responses = new RpcResponseReader(bytes => { meter.responseEnd(bytes) })
  const failure = await pipeLocalAndTunnel(local, tunnel, {
    fromTunnel: chunk => validator.push(chunk),
    fromSocket: chunk => {
      responses.push(chunk)
      return [chunk]
    },
    holdSocketBytes: () => responses.midMessage,
    readTimeout: {
      ms: init.idleReadTimeoutMs,
      stalled: () => validator.midMessage,
      error: () => new RpcIdleReadTimeoutError(init.idleReadTimeoutMs)
    },
    // Decode steps cross the worker without JavaScript once the weights are loaded, where both
    // ends run in the addon: the tensor cache has nothing more to do, and the relay checks and
    // times requests as the validator and the meter here do.
    handOver: fail => !weights.loading && !validator.midMessage && !responses.midMessage && meter.awaitingResponses === 0 &&
      relayWorkerSession(tunnel, local, { maxMessageBytes, readTimeoutMs: init.idleReadTimeoutMs, metrics: init.metrics, fail })
  })
  cache?.end()
  if (failure instanceof RpcTunnelError) {
    init.metrics.refused(failure.reason)
    ended('warn', `closed by this worker: ${failure.message}`)
  } else if (failure instanceof TunnelResetError) {
    ended('debug', 'reset by the coordinator (its llama-server connection failed, or it gave up on this worker)')
  } else if (failure !== undefined) {
    // A local abort (by libp2p: a read buffer overflow, the connection closing) or rpc-server's connection failing.
    ended('warn', `ended early: ${failure.name}: ${failure.message}`)
  } else if (closedFirstBy === 'rpc-server') {
    ended('warn', 'closed by this worker: rpc-server closed its connection first (it drops a connection whose request it cannot serve, or it exited)')
  } else {
    ended('debug', 'closed by the coordinator')
  }
}
