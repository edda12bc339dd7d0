import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { CreditStream } from './credit-stream.js'
import { RpcSessionEndedByWorkerError, RpcWorkerStalledError } from './errors.js'
import { pipeSocketAndStream } from './pipe.js'
import { ResponseWatchdog } from './response-watchdog.js'
import { SetTensorDeduplicator, type TensorInventory } from './tensor-dedup.js'
import type { TunnelListenerOptions } from './index.js'
import type { Logger, Stream } from '@libp2p/interface'

/** How a listener tells the coordinator about a worker that fails its sessions. */
interface FailureWatch {
  /** ms a worker may stay silent while llama-server waits for it */
  responseTimeoutMs: number
  onFailure?: (err: Error) => void
  traffic?: TunnelListenerOptions['traffic']
  /** what the worker's tensor cache held when the plan's cap was set: SET_TENSOR of those data go as SET_TENSOR_CACHED */
  cachedTensors?: TensorInventory
}

/**
 * Calls `onEnded` when the worker ends a session before llama-server does. llama-server alone
 * ends sessions in normal work (when it stops); a worker ends one only when its rpc-server died
 * or its bridge refused a request. llama-server aborts at its next use of the session, so the
 * worker is reported at once: the coordinator can re-plan before a request meets the broken engine.
 */
function watchEndedByWorker (socket: Socket, stream: Stream, onEnded: (err: RpcSessionEndedByWorkerError) => void): void {
  let over = false
  const byWorker = (how: string): void => {
    if (over) return
    over = true
    onEnded(new RpcSessionEndedByWorkerError(how))
  }
  socket.once('end', () => { over = true })
  socket.once('close', () => { over = true })
  stream.addEventListener('remoteCloseWrite', () => { byWorker('it closed the stream') }, { once: true })
  // Only a reset from the far end: this side aborts the stream itself when llama-server's socket fails.
  stream.addEventListener('close', event => { if (event.error?.name === 'StreamResetError') byWorker('it reset the stream') }, { once: true })
}

/**
 * A TCP listener on 127.0.0.1 (a port the kernel picks) standing in for one worker's
 * rpc-server: llama-server's `--rpc` points at it, and each connection it accepts is piped
 * into a new tunnel stream to that worker.
 */
export class TunnelListener {
  readonly #server: Server
  readonly #sockets = new Set<Socket>()
  readonly #openStream: () => Promise<Stream>
  readonly #log: Logger
  readonly #watch: FailureWatch
  #endpoint = ''

  private constructor (openStream: () => Promise<Stream>, log: Logger, watch: FailureWatch) {
    this.#openStream = openStream
    this.#log = log
    this.#watch = watch
    this.#server = createServer({ noDelay: true }, socket => { void this.#accept(socket) })
  }

  /** Listens on 127.0.0.1:0; `openStream` opens a tunnel stream to the worker for each connection. */
  static async listen (openStream: () => Promise<Stream>, log: Logger, watch: FailureWatch): Promise<TunnelListener> {
    const listener = new TunnelListener(openStream, log, watch)
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

  async #accept (socket: Socket): Promise<void> {
    this.#sockets.add(socket)
    socket.once('close', () => this.#sockets.delete(socket))
    let stream: Stream
    try {
      stream = await this.#openStream()
    } catch (err) {
      // llama-server treats a dropped RPC connection as fatal; the engine restarts it with a new plan.
      this.#log.error('cannot open a tunnel stream for %s: %s', this.endpoint, (err as Error).message)
      socket.destroy()
      this.#watch.onFailure?.(err as Error)
      return
    }
    if (socket.destroyed) {
      stream.abort(new Error('the local RPC client went away before the tunnel stream opened'))
      return
    }
    // A hung or cut-off worker would leave llama-server waiting for ever; the watchdog ends that.
    const { responseTimeoutMs, onFailure } = this.#watch
    const traffic = this.#watch.traffic?.()
    const inventory = this.#watch.cachedTensors
    const dedup = inventory === undefined || inventory.empty ? undefined : new SetTensorDeduplicator(inventory)
    if (onFailure !== undefined) watchEndedByWorker(socket, stream, onFailure)
    const watchdog = new ResponseWatchdog(responseTimeoutMs, () => {
      const err = new RpcWorkerStalledError(responseTimeoutMs)
      stream.abort(err)
      socket.destroy()
      onFailure?.(err)
    })
    const failure = await pipeSocketAndStream(socket, new CreditStream(stream), {
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
      fromStream: chunk => {
        watchdog.response(chunk)
        traffic?.response(chunk)
        return [chunk]
      }
    })
    watchdog.stop()
    if (failure !== undefined) this.#log('tunnel connection on %s ended: %s', this.endpoint, failure.message)
  }

  /** Stops listening and closes every open connection (and so its tunnel stream). */
  async close (): Promise<void> {
    const closed = new Promise<void>(resolve => { this.#server.close(() => { resolve() }) })
    for (const socket of this.#sockets) socket.destroy()
    await closed
  }
}
