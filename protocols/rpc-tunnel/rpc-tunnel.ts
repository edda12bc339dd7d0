import { Registry } from 'prom-client'
import { IDLE_READ_TIMEOUT_MS, MAX_INBOUND_STREAMS, MAX_OUTBOUND_STREAMS, OPEN_STREAM_TIMEOUT_MS, RESPONSE_TIMEOUT_MS, RPC_CAP_PROTOCOL, RPC_TUNNEL_PROTOCOL } from './constants.js'
import { TunnelListener } from './coordinator-listener.js'
import { answerCapMessage, MessageCaps, sendCapMessage } from './message-cap-exchange.js'
import { RpcTunnelMetrics } from './metrics.js'
import { TensorCache, type CachedTensor } from './tensor-cache.js'
import { TensorInventory } from './tensor-dedup.js'
import { TunnelConnections } from './tunnel-connection.js'
import { bridgeTunnelStream, type WorkerBridgeInit } from './worker-bridge.js'
import type { RpcTunnel as RpcTunnelInterface, RpcTunnelComponents, RpcTunnelInit, TunnelListenerOptions } from './index.js'
import type { Connection, Logger, PeerId, Startable, Stream } from '@libp2p/interface'

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
    if (bridge !== undefined) {
      const caps = this.#caps
      const { tensorCache: cacheInit } = bridge
      const tensorCache = cacheInit === undefined ? undefined : new TensorCache(cacheInit.dir, cacheInit.maxBytes, this.#metrics, this.#log)
      this.#bridge = { ...bridge, maxMessageBytes: peer => caps.get(peer), idleReadTimeoutMs: this.#init.idleReadTimeoutMs ?? IDLE_READ_TIMEOUT_MS, tensorCache, metrics: this.#metrics, log: this.#log }
      await this.#components.registrar.handle(this.protocol, async (stream: Stream, connection: Connection) => {
        if (this.#bridge !== undefined) await bridgeTunnelStream(this.#bridge, stream, connection)
      }, {
        maxInboundStreams: this.#init.maxInboundStreams ?? MAX_INBOUND_STREAMS,
        maxOutboundStreams: this.#init.maxOutboundStreams ?? MAX_OUTBOUND_STREAMS
      })
      const capInit = { authorize: bridge.authorize, ceiling: bridge.messageCapCeiling, caps, tensorCache, metrics: this.#metrics, log: this.#log }
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
    await this.closeListeners()
    this.#started = false
  }

  isStarted (): boolean {
    return this.#started
  }

  async openListener (worker: PeerId, options: TunnelListenerOptions = {}): Promise<string> {
    // The worker applies the plan's cap before llama-server can connect through this listener,
    // and tells what its tensor cache holds: those tensors need not cross the network again.
    const cached = options.maxMessageBytes === undefined ? [] : await this.#tellMessageCap(worker, options.maxMessageBytes)
    const listener = await TunnelListener.listen(async () => await this.#connections.openStream(worker, this.protocol, AbortSignal.timeout(this.#init.openStreamTimeoutMs ?? OPEN_STREAM_TIMEOUT_MS)), this.#log, {
      responseTimeoutMs: this.#init.responseTimeoutMs ?? RESPONSE_TIMEOUT_MS,
      onFailure: options.onFailure,
      traffic: options.traffic,
      cachedTensors: new TensorInventory(cached)
    })
    this.#listeners.add(listener)
    return listener.endpoint
  }

  messageCap (coordinator: PeerId): number {
    return this.#caps.get(coordinator)
  }

  async #tellMessageCap (worker: PeerId, maxMessageBytes: number): Promise<CachedTensor[]> {
    const signal = AbortSignal.timeout(this.#init.openStreamTimeoutMs ?? OPEN_STREAM_TIMEOUT_MS)
    const stream = await this.#components.connectionManager.openStream(worker, RPC_CAP_PROTOCOL, { signal })
    return await sendCapMessage(stream, worker, maxMessageBytes, signal)
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
