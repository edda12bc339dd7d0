import { Registry } from 'prom-client'
import { IDLE_READ_TIMEOUT_MS, MAX_INBOUND_STREAMS, MAX_OUTBOUND_STREAMS, OPEN_STREAM_TIMEOUT_MS, RESPONSE_TIMEOUT_MS, RPC_CAP_PROTOCOL, RPC_TUNNEL_PROTOCOL } from './constants.js'
import { createChannelIdentity, type ChannelIdentity } from './channel-identity.js'
import { TunnelListener } from './coordinator-listener.js'
import { CreditStream } from './credit-stream.js'
import { connectDataChannel, DataChannelServer, type DataChannelTarget, type NativeChannelTls } from './data-channel.js'
import { answerCapMessage, MessageCaps, sendCapMessage } from './message-cap-exchange.js'
import { hostOf } from './multiaddr-host.js'
import { RpcTunnelMetrics } from './metrics.js'
import { TensorCache, type CachedTensor } from './tensor-cache.js'
import { TensorInventory } from './tensor-dedup.js'
import { TCP_RETRY_MS, TunnelConnections } from './tunnel-connection.js'
import type { TunnelEnd } from './tunnel-end.js'
import { bridgeDataChannel, bridgeTunnelStream, type WorkerBridgeInit } from './worker-bridge.js'
import type { RpcTunnel as RpcTunnelInterface, RpcTunnelComponents, RpcTunnelInit, TunnelListenerOptions } from './index.js'
import type { Connection, Logger, PeerId, Startable, Stream } from '@libp2p/interface'

/** Coordinator: what a worker answered to a plan's cap, with where to reach its data channel. */
interface WorkerAnswer {
  cachedTensors: CachedTensor[]
  channel?: DataChannelTarget
}

/** The ggml-rpc tunnel service: a worker bridge, coordinator listeners, or both. */
export class RpcTunnel implements Startable, RpcTunnelInterface {
  readonly protocol = RPC_TUNNEL_PROTOCOL
  readonly registry: Registry
  readonly #components: RpcTunnelComponents
  readonly #init: RpcTunnelInit
  readonly #log: Logger
  readonly #metrics: RpcTunnelMetrics
  readonly #listeners = new Set<TunnelListener>()
  readonly #caps: MessageCaps
  readonly #connections: TunnelConnections
  #bridge: WorkerBridgeInit | undefined
  /** this side's data channel key, made at start and never stored */
  #identity: ChannelIdentity | undefined
  /** coordinator: the native TLS of its data channel sessions, where the addon was given */
  #nativeClient: NativeChannelTls | undefined
  /** worker: the data channel it serves */
  #channel: DataChannelServer | undefined
  /**
   * coordinator: when each data channel (a worker's address, port and key) last failed; by
   * channel, not by worker, so that a worker that restarted (a new port and key) is tried at once
   */
  readonly #channelFailedAt = new Map<string, number>()
  #started = false

  constructor (components: RpcTunnelComponents, init: RpcTunnelInit) {
    this.#components = components
    this.#init = init
    this.#log = components.logger.forComponent('llmesh:rpc-tunnel')
    this.registry = init.registry ?? new Registry()
    this.#metrics = new RpcTunnelMetrics(this.registry)
    this.#caps = new MessageCaps(this.#metrics)
    this.#connections = new TunnelConnections(components.connectionManager, components.peerStore, this.#log)
  }

  readonly [Symbol.toStringTag] = 'llmesh:rpc-tunnel'

  async start (): Promise<void> {
    const { bridge } = this.#init
    if (this.#init.dataChannel !== false) {
      const identity = await createChannelIdentity()
      this.#identity = identity
      const addon = this.#init.nativeSockets
      this.#nativeClient = addon === undefined ? undefined : { addon, context: addon.createContext(identity.key, identity.cert, false) }
    }
    if (bridge !== undefined) {
      const caps = this.#caps
      const { tensorCache: cacheInit } = bridge
      const tensorCache = cacheInit === undefined ? undefined : new TensorCache(cacheInit.dir, cacheInit.maxBytes, this.#metrics, this.#log)
      this.#bridge = { ...bridge, maxMessageBytes: peer => caps.get(peer), idleReadTimeoutMs: this.#init.idleReadTimeoutMs ?? IDLE_READ_TIMEOUT_MS, tensorCache, metrics: this.#metrics, log: this.#log, native: this.#init.nativeSockets }
      await this.#components.registrar.handle(this.protocol, async (stream: Stream, connection: Connection) => {
        if (this.#bridge !== undefined) await bridgeTunnelStream(this.#bridge, stream, connection)
      }, {
        maxInboundStreams: this.#init.maxInboundStreams ?? MAX_INBOUND_STREAMS,
        maxOutboundStreams: this.#init.maxOutboundStreams ?? MAX_OUTBOUND_STREAMS
      })
      this.#channel = await this.#listenForDataChannel()
      const capInit = { authorize: bridge.authorize, ceiling: bridge.messageCapCeiling, caps, tensorCache, channel: this.#channel, metrics: this.#metrics, log: this.#log }
      const timeoutMs = this.#init.openStreamTimeoutMs ?? OPEN_STREAM_TIMEOUT_MS
      await this.#components.registrar.handle(RPC_CAP_PROTOCOL, async (stream: Stream, connection: Connection) => {
        await answerCapMessage(capInit, stream, connection, timeoutMs)
      })
    }
    this.#started = true
  }

  async stop (): Promise<void> {
    if (this.#bridge !== undefined) {
      await this.#components.registrar.unhandle(this.protocol)
      await this.#components.registrar.unhandle(RPC_CAP_PROTOCOL)
    }
    this.#bridge = undefined
    await this.#channel?.close()
    this.#channel = undefined
    await this.closeListeners()
    this.#started = false
  }

  /** Worker: the data channel, on the hosts libp2p listens on; none when it cannot listen there (sessions then use tunnel streams). */
  async #listenForDataChannel (): Promise<DataChannelServer | undefined> {
    const identity = this.#identity
    const hosts = [...new Set(this.#components.addressManager.getListenAddrs().map(hostOf).filter(host => host !== undefined))]
    if (identity === undefined || hosts.length === 0) return undefined
    try {
      return await DataChannelServer.listen({
        hosts,
        port: this.#init.bridge?.dataChannelPort ?? 0,
        identity,
        maxSessions: this.#init.maxInboundStreams ?? MAX_INBOUND_STREAMS,
        nativeTls: this.#init.nativeSockets,
        onSession: (session, coordinator) => {
          if (this.#bridge === undefined) session.abort(new Error('the tunnel service stopped'))
          else void bridgeDataChannel(this.#bridge, session, coordinator)
        },
        onRefused: (reason, why) => {
          this.#metrics.refused(reason)
          this.#log('data channel refused %s', why)
        }
      })
    } catch (err) {
      const message = `cannot listen for the tunnel's data channel on ${hosts.join(', ')} (${(err as Error).message}); sessions use tunnel streams`
      this.#log.error(message)
      this.#init.bridge?.nodeLog?.('warn', message)
      return undefined
    }
  }

  isStarted (): boolean {
    return this.#started
  }

  async openListener (worker: PeerId, options: TunnelListenerOptions = {}): Promise<string> {
    // The worker applies the plan's cap before llama-server can connect through this listener,
    // tells what its tensor cache holds (those tensors need not cross the network again) and
    // where its data channel is.
    const answer: WorkerAnswer = options.maxMessageBytes === undefined ? { cachedTensors: [] } : await this.#tellMessageCap(worker, options.maxMessageBytes)
    const listener = await TunnelListener.listen(async () => await this.#openSession(worker, answer.channel), this.#log, {
      responseTimeoutMs: this.#init.responseTimeoutMs ?? RESPONSE_TIMEOUT_MS,
      onFailure: options.onFailure,
      traffic: options.traffic,
      cachedTensors: new TensorInventory(answer.cachedTensors),
      native: this.#init.nativeSockets,
      metrics: this.#metrics
    })
    this.#listeners.add(listener)
    return listener.endpoint
  }

  get dataChannelPort (): number | undefined {
    return this.#channel?.port
  }

  messageCap (coordinator: PeerId): number {
    return this.#caps.get(coordinator)
  }

  async #tellMessageCap (worker: PeerId, maxMessageBytes: number): Promise<WorkerAnswer> {
    const signal = AbortSignal.timeout(this.#init.openStreamTimeoutMs ?? OPEN_STREAM_TIMEOUT_MS)
    const connection = await this.#components.connectionManager.openConnection(worker, { signal })
    const stream = await connection.newStream(RPC_CAP_PROTOCOL, { signal })
    const answer = await sendCapMessage(stream, worker, maxMessageBytes, this.#identity?.sha256, signal)
    // The worker's channel is on the address this connection reached it at.
    const host = hostOf(connection.remoteAddr)
    return { ...answer, channel: answer.channel === undefined || host === undefined ? undefined : { ...answer.channel, host } }
  }

  /**
   * Coordinator: a new session to `worker`, on its data channel where it has one that works,
   * else in a tunnel stream. A channel that fails (a firewall in the way, say) is left alone
   * for TCP_RETRY_MS, so that only the first session after each retry waits for it.
   */
  async #openSession (worker: PeerId, channel: DataChannelTarget | undefined): Promise<TunnelEnd> {
    const key = channel === undefined ? '' : `${channel.host}|${channel.port}|${channel.sha256}`
    const failedAt = this.#channelFailedAt.get(key)
    if (channel !== undefined && this.#identity !== undefined && (failedAt === undefined || Date.now() - failedAt >= TCP_RETRY_MS)) {
      try {
        const session = await connectDataChannel(channel, this.#identity, this.#nativeClient)
        this.#channelFailedAt.delete(key)
        this.#metrics.session('data-channel')
        return session
      } catch (err) {
        const now = Date.now()
        for (const [old, at] of this.#channelFailedAt) if (now - at >= TCP_RETRY_MS) this.#channelFailedAt.delete(old)
        this.#channelFailedAt.set(key, now)
        this.#log.error('%s; sessions to worker %p use tunnel streams for %d s, or until it names another channel', (err as Error).message, worker, TCP_RETRY_MS / 1000)
      }
    }
    const stream = await this.#connections.openStream(worker, this.protocol, AbortSignal.timeout(this.#init.openStreamTimeoutMs ?? OPEN_STREAM_TIMEOUT_MS))
    this.#metrics.session('libp2p')
    return new CreditStream(stream)
  }

  async closeListener (endpoint: string): Promise<void> {
    const listener = [...this.#listeners].find(open => open.endpoint === endpoint)
    if (listener === undefined) return
    this.#listeners.delete(listener)
    await listener.close()
  }

  async closeListeners (): Promise<void> {
    const listeners = [...this.#listeners]
    this.#listeners.clear()
    await Promise.all(listeners.map(async listener => { await listener.close() }))
  }
}
