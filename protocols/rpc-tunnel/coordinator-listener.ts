import { createServer, type AddressInfo, type Server } from 'node:net'
import { RpcSessionEndedByWorkerError, RpcWorkerStalledError } from './errors.js'
import { acceptedLocalEnd, localServerOptions } from './local-connection.js'
import { relayCoordinatorSession } from './native-relay.js'
import { pipeLocalAndTunnel } from './pipe.js'
import { ResponseWatchdog } from './response-watchdog.js'
import { SetTensorDeduplicator, type TensorInventory } from './tensor-dedup.js'
import { TunnelResetError, type LocalEnd, type TunnelEnd } from './tunnel-end.js'
import type { TunnelListenerOptions } from './index.js'
import type { RpcTunnelMetrics } from './metrics.js'
import type { NativeSocketAddon } from './native-socket/addon.js'
import type { Logger } from '@libp2p/interface'

/** How a listener tells the coordinator about a worker that fails its sessions. */
interface FailureWatch {
  /** ms a worker may stay silent while llama-server waits for it */
  responseTimeoutMs: number
  onFailure?: (err: Error) => void
  traffic?: TunnelListenerOptions['traffic']
  /** what the worker's tensor cache held when the plan's cap was set: SET_TENSOR of those data go as SET_TENSOR_CACHED */
  cachedTensors?: TensorInventory
  /** moves llama-server's connections in native code where given */
  native?: NativeSocketAddon
  /** counts the sessions handed to the native relay */
  metrics?: RpcTunnelMetrics
}

/**
 * Calls `onEnded` when the worker ends a session before llama-server does. llama-server alone
 * ends sessions in normal work (when it stops); a worker ends one only when its rpc-server died
 * or its bridge refused a request. llama-server aborts at its next use of the session, so the
 * worker is reported at once: the coordinator can re-plan before a request meets the broken engine.
 */
function watchEndedByWorker (local: LocalEnd, tunnel: TunnelEnd, onEnded: (err: RpcSessionEndedByWorkerError) => void): void {
  let over = false
  const byWorker = (how: string): void => {
    if (over) return
    over = true
    onEnded(new RpcSessionEndedByWorkerError(how))
  }
  local.onEnd(() => { over = true })
  local.onClose(() => { over = true })
  tunnel.onEnd(() => { byWorker('it closed the session') })
  // Only a reset from the far end: this side aborts the tunnel itself when llama-server's socket fails.
  tunnel.onClose(err => { if (err instanceof TunnelResetError) byWorker('it reset the session') })
}

/**
 * A TCP listener on 127.0.0.1 (a port the kernel picks) standing in for one worker's
 * rpc-server: llama-server's `--rpc` points at it, and each connection it accepts is piped
 * into a new session to that worker (on its data channel, or in a tunnel stream).
 */
export class TunnelListener {
  readonly #server: Server
  readonly #connections = new Set<LocalEnd>()
  readonly #openTunnel: () => Promise<TunnelEnd>
  readonly #log: Logger
  readonly #watch: FailureWatch
  #endpoint = ''

  private constructor (openTunnel: () => Promise<TunnelEnd>, log: Logger, watch: FailureWatch) {
    this.#openTunnel = openTunnel
    this.#log = log
    this.#watch = watch
    this.#server = createServer(localServerOptions(watch.native), socket => { void this.#accept(acceptedLocalEnd(socket, watch.native)) })
  }

  /** Listens on 127.0.0.1:0; `openTunnel` opens a session to the worker for each connection. */
  static async listen (openTunnel: () => Promise<TunnelEnd>, log: Logger, watch: FailureWatch): Promise<TunnelListener> {
    const listener = new TunnelListener(openTunnel, log, watch)
    await new Promise<void>((resolve, reject) => {
      listener.#server.once('error', reject)
      listener.#server.listen({ host: '127.0.0.1', port: 0 }, () => {
        listener.#server.off('error', reject)
        const { address, port } = listener.#server.address() as AddressInfo
        listener.#endpoint = `${address}:${port}`
        resolve()
      })
    })
    return listener
  }

  /** The `host:port` to give llama-server's `--rpc`; kept from the start, since log lines name it after the listener closed. */
  get endpoint (): string {
    return this.#endpoint
  }

  async #accept (local: LocalEnd): Promise<void> {
    this.#connections.add(local)
    local.onClose(() => this.#connections.delete(local))
    let tunnel: TunnelEnd
    try {
      tunnel = await this.#openTunnel()
    } catch (err) {
      // llama-server treats a dropped RPC connection as fatal; the engine restarts it with a new plan.
      this.#log.error('cannot open a tunnel session for %s: %s', this.endpoint, (err as Error).message)
      local.destroy()
      this.#watch.onFailure?.(err as Error)
      return
    }
    if (!this.#connections.has(local)) {
      tunnel.abort(new Error('the local RPC client went away before the tunnel session opened'))
      return
    }
    // A hung or cut-off worker would leave llama-server waiting for ever; the watchdog ends that.
    const { responseTimeoutMs, onFailure } = this.#watch
    const traffic = this.#watch.traffic?.()
    const inventory = this.#watch.cachedTensors
    const dedup = inventory === undefined || inventory.empty ? undefined : new SetTensorDeduplicator(inventory)
    if (onFailure !== undefined) watchEndedByWorker(local, tunnel, onFailure)
    const stalled = (): void => {
      const err = new RpcWorkerStalledError(responseTimeoutMs)
      tunnel.abort(err)
      local.destroy()
      onFailure?.(err)
    }
    const watchdog = new ResponseWatchdog(responseTimeoutMs, stalled)
    const failure = await pipeLocalAndTunnel(local, tunnel, {
      fromSocket: chunk => {
        watchdog.request(chunk)
        traffic?.request(chunk)
        return dedup?.push(chunk) ?? [chunk]
      },
      // One-way commands (set_tensor, ...) wait for the graph computation they prepare, or for a
      // request llama-server then waits on, and cross with it as one frame. The worker starts
      // computing as soon as llama-server asks; the GET_TENSOR that llama-server sends a moment
      // later crosses while it computes.
      holdSocketBytes: () => watchdog.midRequest || (!watchdog.awaitingResponse && !watchdog.lastRequestComputes),
      fromTunnel: chunk => {
        watchdog.response(chunk)
        traffic?.response(chunk)
        return [chunk]
      },
      // Decode steps cross the coordinator without JavaScript once the weights are loaded, where
      // both ends run in the addon: the relay keeps the watchdog's timeout and tells the traffic
      // observer each command, unless the observer needs the bytes themselves.
      handOver: fail => {
        if (!watchdog.weightsLoaded || watchdog.midRequest || watchdog.midResponse || watchdog.awaitingResponse) return false
        if (traffic !== undefined && traffic.relayed === undefined) return false
        if (!relayCoordinatorSession(tunnel, local, { responseTimeoutMs, stalled, fail, relayed: command => { traffic?.relayed?.(command) } })) return false
        watchdog.stop()
        this.#watch.metrics?.relayed()
        return true
      }
    })
    watchdog.stop()
    if (failure !== undefined) this.#log('tunnel connection on %s ended: %s', this.endpoint, failure.message)
  }

  /** Stops listening and closes every open connection (and so its tunnel session). */
  async close (): Promise<void> {
    const closed = new Promise<void>(resolve => { this.#server.close(() => { resolve() }) })
    for (const local of this.#connections) local.destroy()
    await closed
  }
}
