import { Registry } from 'prom-client'
import { IDLE_READ_TIMEOUT_MS, MAX_INBOUND_STREAMS, MAX_OUTBOUND_STREAMS, OPEN_STREAM_TIMEOUT_MS, RPC_TUNNEL_PROTOCOL } from './constants.js'
import { TunnelListener } from './coordinator-listener.js'
import { RpcTunnelMetrics } from './metrics.js'
import { bridgeTunnelStream, type WorkerBridgeInit } from './worker-bridge.js'
import type { RpcTunnel as RpcTunnelInterface, RpcTunnelComponents, RpcTunnelInit } from './index.js'
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
  #bridge: WorkerBridgeInit | undefined
  #started = false

  constructor (components: RpcTunnelComponents, init: RpcTunnelInit) {
    this.#components = components
    this.#init = init
    this.#log = components.logger.forComponent('llmesh:rpc-tunnel')
    this.registry = init.registry ?? new Registry()
    this.#metrics = new RpcTunnelMetrics(this.registry)
  }

  readonly [Symbol.toStringTag] = 'llmesh:rpc-tunnel'

  async start (): Promise<void> {
    const { bridge } = this.#init
    if (bridge !== undefined) {
      this.#bridge = { ...bridge, idleReadTimeoutMs: this.#init.idleReadTimeoutMs ?? IDLE_READ_TIMEOUT_MS, metrics: this.#metrics, log: this.#log }
      await this.#components.registrar.handle(this.protocol, async (stream: Stream, connection: Connection) => {
        if (this.#bridge !== undefined) await bridgeTunnelStream(this.#bridge, stream, connection)
      }, {
        maxInboundStreams: this.#init.maxInboundStreams ?? MAX_INBOUND_STREAMS,
        maxOutboundStreams: this.#init.maxOutboundStreams ?? MAX_OUTBOUND_STREAMS
      })
    }
    this.#started = true
  }

  async stop (): Promise<void> {
    if (this.#bridge !== undefined) await this.#components.registrar.unhandle(this.protocol)
    this.#bridge = undefined
    await this.closeListeners()
    this.#started = false
  }

  isStarted (): boolean {
    return this.#started
  }

  async openListener (worker: PeerId): Promise<string> {
    const listener = await TunnelListener.listen(async () => await this.#components.connectionManager.openStream(worker, this.protocol, {
      signal: AbortSignal.timeout(this.#init.openStreamTimeoutMs ?? OPEN_STREAM_TIMEOUT_MS)
    }), this.#log)
    this.#listeners.add(listener)
    return listener.endpoint
  }

  async closeListeners (): Promise<void> {
    const listeners = [...this.#listeners]
    this.#listeners.clear()
    await Promise.all(listeners.map(async listener => { await listener.close() }))
  }
}
