import { NativeSocketError } from '../errors.js'
import { isResetCode, TUNNEL_WINDOW_BYTES, TunnelResetError, type LocalEnd } from '../tunnel-end.js'
import { NativeSocketEvent, type NativeSocketAddon, type NativeTlsContext, type NativeSocketHandle } from './addon.js'
import type { Socket } from 'node:net'

/** Bytes waiting for the kernel beyond which `send` asks the pipe to wait for the drain. */
const SEND_HIGH_WATER_BYTES = 256 * 1024

/** The most parts the addon sends in one write. */
const MAX_WRITE_PARTS = 16

/** How often a relay's command timings are taken into JavaScript (and so into the metrics). */
const RELAY_RECORDS_MS = 1000

/** Where a relay runs, and what it checks each request against: the rules for a session past its HELLO. */
export interface NativeRelayRules {
  /** a NativeRelayMode */
  mode: number
  /** largest request payload let through, in bytes */
  maxMessageBytes: number
  /** one byte per command: nonzero where the command is accepted */
  accepted: Uint8Array
  /** per command, the one payload size its request has, -1 where any size goes */
  fixedBytes: Float64Array
  /** one byte per command: nonzero where rpc-server answers it */
  withResponse: Uint8Array
  /** a worker's read timeout (the coordinator stopped part-way through a request), or a coordinator's watchdog (the worker went silent while llama-server waits) */
  timeoutMs: number
}

/** Why a relay stopped: a NativeRelayRefusal, and the command and size it refused where one was. */
export interface NativeRelayStop {
  refusal: number
  command: number
  size: bigint
}

/** Where a relay reports to. */
export interface NativeRelayListener {
  /** it stopped relaying (a refusal, or the timeout); both ends are still open, for the listener to close */
  refused: (stop: NativeRelayStop) => void
  /** commands it finished: RELAY_RECORD_FIELDS numbers each */
  records: (records: Float64Array) => void
}

/** The file descriptor under a connected net.Socket (Node keeps it on the socket's handle). */
function socketFd (socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd
  if (typeof fd !== 'number' || fd < 0) throw new NativeSocketError('the socket has no file descriptor to hand to the native session', 'EBADF')
  return fd
}

/**
 * A TunnelEnd over a session of the native addon (native-socket.c): a socket whose byte moving
 * (and, on the data channel, encryption) runs in native code on this thread's event loop,
 * handing JavaScript each arrival in one piece. It is a data channel socket (TLS), or the
 * local connection to llama-server or rpc-server (plain). Flow control as for SocketTunnelEnd:
 * reading stops once TUNNEL_WINDOW_BYTES are not yet handed on, so that a slow reader holds
 * the sender back through TCP. Not half-open, as Node's sockets here are not: once the far end
 * ended its half, this end ends its own, and the session closes when both are done.
 */
export class NativeSocketEnd implements LocalEnd {
  readonly #addon: NativeSocketAddon
  readonly #handle: NativeSocketHandle
  /** the server's accepted socket, kept (never reading) so that the server counts the connection until the session closes */
  readonly #holder: Socket | undefined
  #peerSha256 = ''
  #onHandshake: ((err?: Error) => void) | undefined
  #onData: ((parts: Uint8Array[]) => void) | undefined
  readonly #onEnd: Array<() => void> = []
  readonly #onClose: Array<(err?: Error) => void> = []
  readonly #onDrained: Array<() => void> = []
  readonly #onFinished: Array<() => void> = []
  #reading = false
  #resumeScheduled = false
  #unreleased = 0
  #waitingBytes = 0
  #peerEnded = false
  #ending = false
  #finished = false
  #closed = false
  #failure: Error | undefined
  #abortedWith: Error | undefined
  #relay: { listener: NativeRelayListener, timer: NodeJS.Timeout } | undefined

  private constructor (addon: NativeSocketAddon, context: NativeTlsContext | null, socket: Socket, accepted: boolean) {
    this.#addon = addon
    const fd = socketFd(socket)
    this.#handle = addon.open(context, fd, accepted, (kind, value, code) => { this.#event(kind, value, code) })
    // A client's socket would read the server's bytes itself: only its duplicate stays open.
    if (accepted) {
      this.#holder = socket
      // It never reads or writes; whatever befalls the connection, the session reports.
      socket.on('error', () => {})
    } else {
      socket.destroy()
    }
  }

  /**
   * The plain session of a local connection to llama-server or rpc-server, which from here owns
   * `socket`: one a server accepted with pauseOnConnect (`accepted`), or one that connected
   * while paused; either way Node has read nothing of it.
   */
  static local (addon: NativeSocketAddon, socket: Socket, accepted: boolean): NativeSocketEnd {
    return new NativeSocketEnd(addon, null, socket, accepted)
  }

  /**
   * Runs a TLS handshake on `socket` (connected; a server's accepted with pauseOnConnect, so
   * that Node has read nothing of it) and resolves with the session once it is done; its
   * `peerSha256` is then the fingerprint the caller pins. The session owns the socket from here.
   * Rejects with a NativeSocketError when the handshake fails or takes longer than `timeoutMs`,
   * and with the signal's reason when `signal` aborts first.
   */
  static async handshake (addon: NativeSocketAddon, context: NativeTlsContext, socket: Socket, server: boolean, timeoutMs: number, signal?: AbortSignal): Promise<NativeSocketEnd> {
    const end = new NativeSocketEnd(addon, context, socket, server)
    const onAbort = (): void => { end.abort(signal?.reason as Error) }
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        end.abort(new NativeSocketError(`no TLS session within ${timeoutMs} ms`, 'ETIMEDOUT'))
      }, timeoutMs)
      end.#onHandshake = err => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        end.#onHandshake = undefined
        if (err === undefined) resolve()
        else reject(err)
      }
      if (signal?.aborted === true) onAbort()
      else signal?.addEventListener('abort', onAbort)
    })
    return end
  }

  /** SHA-256 of the peer's certificate (DER), lower-case hex; empty where it sent none. */
  get peerSha256 (): string {
    return this.#peerSha256
  }

  #event (kind: number, value: unknown, code: string | undefined): void {
    switch (kind) {
      case NativeSocketEvent.HANDSHAKE:
        this.#peerSha256 = value as string
        // Nothing is read until the pipe takes data (onData): a session's first bytes wait in TLS.
        this.#addon.setReading(this.#handle, false)
        this.#onHandshake?.()
        break
      case NativeSocketEvent.DATA: {
        const data = value as Buffer
        this.#unreleased += data.byteLength
        if (this.#unreleased >= TUNNEL_WINDOW_BYTES) this.#setReading(false)
        this.#onData?.([data])
        break
      }
      case NativeSocketEvent.END:
        this.#peerEnded = true
        for (const listener of this.#onEnd.splice(0)) listener()
        if (!this.#ending) void this.closeWhenSent()
        else this.#closeIfDone()
        break
      case NativeSocketEvent.DRAINED:
        this.#waitingBytes = 0
        this.#drained()
        break
      case NativeSocketEvent.ERROR: {
        const message = value as string
        const errorCode = code ?? 'EIO'
        this.#failure ??= isResetCode(errorCode) ? new TunnelResetError(message) : new NativeSocketError(message, errorCode)
        this.#destroy()
        break
      }
      case NativeSocketEvent.FINISHED:
        this.#finished = true
        for (const callback of this.#onFinished.splice(0)) callback()
        this.#closeIfDone()
        break
      case NativeSocketEvent.REFUSED: {
        const [refusal, command, size] = value as [number, number, bigint]
        this.#relay?.listener.refused({ refusal, command, size })
        break
      }
    }
  }

  #setReading (reading: boolean): void {
    if (this.#closed) return
    if (!reading) {
      this.#reading = false
      this.#addon.setReading(this.#handle, false)
      return
    }
    if (this.#reading || this.#resumeScheduled) return
    // In a task of its own: resuming hands on what waited, which must not run inside the
    // listener that released it.
    this.#resumeScheduled = true
    setImmediate(() => {
      this.#resumeScheduled = false
      if (this.#closed || this.#unreleased >= TUNNEL_WINDOW_BYTES) return
      this.#reading = true
      this.#addon.setReading(this.#handle, true)
    })
  }

  #drained (): void {
    for (const callback of this.#onDrained.splice(0)) callback()
  }

  #closeIfDone (): void {
    if (this.#peerEnded && this.#finished) this.#destroy()
  }

  #destroy (): void {
    if (this.#closed) return
    this.#closed = true
    if (this.#relay !== undefined) {
      clearInterval(this.#relay.timer)
      this.takeRelayRecords()
    }
    this.#addon.destroy(this.#handle)
    this.#holder?.destroy()
    const err = this.#abortedWith ?? this.#failure
    this.#onHandshake?.(err ?? new NativeSocketError('the TLS session closed during its handshake', 'ECONNRESET'))
    for (const callback of this.#onFinished.splice(0)) callback()
    // Like a socket's 'close', after the current task.
    process.nextTick(() => {
      for (const listener of this.#onClose.splice(0)) listener(err)
    })
  }

  /**
   * Hands this data channel session and `local` (the plain session of the local connection:
   * rpc-server's on a worker, llama-server's on a coordinator) to the addon's relay from the
   * next turn of the loop: from then on their bytes flow between them in native code, checked
   * and timed by `rules`, and no longer reach onData. Both ends still end, fail and close as
   * before. Call it only when nothing read from either is still to be sent on, and nothing
   * waits for either to drain.
   */
  relay (local: NativeSocketEnd, rules: NativeRelayRules, listener: NativeRelayListener): void {
    this.#addon.relay(this.#handle, local.#handle, rules.mode, rules.maxMessageBytes, rules.accepted, rules.fixedBytes, rules.withResponse, rules.timeoutMs)
    this.#relay = { listener, timer: setInterval(() => { this.takeRelayRecords() }, RELAY_RECORDS_MS).unref() }
  }

  /** Hands the commands the relay finished since the last time to its listener (also about once a second, and at the close). */
  takeRelayRecords (): void {
    const records = this.#addon.relayRecords(this.#handle)
    if (records !== undefined) this.#relay?.listener.records(records)
  }

  onData (listener: (parts: Uint8Array[]) => void): void {
    this.#onData = listener
    this.#setReading(true)
  }

  onEnd (listener: () => void): void {
    this.#onEnd.push(listener)
  }

  onClose (listener: (err?: Error) => void): void {
    this.#onClose.push(listener)
  }

  release (bytes: number): void {
    this.#unreleased -= bytes
    if (!this.#reading && this.#onData !== undefined && this.#unreleased < TUNNEL_WINDOW_BYTES) this.#setReading(true)
  }

  send (...parts: Uint8Array[]): boolean {
    if (!this.writable) return false
    for (let i = 0; i < parts.length; i += MAX_WRITE_PARTS) {
      this.#waitingBytes = this.#addon.write(this.#handle, parts.length === 1 ? parts[0] : parts.slice(i, i + MAX_WRITE_PARTS))
    }
    // The addon sends DRAINED only for bytes that waited for the loop: a write that found the
    // kernel ready again took them too, and whoever waits for the drain must hear of it.
    if (this.#waitingBytes === 0 && this.#onDrained.length > 0) {
      process.nextTick(() => { if (this.#waitingBytes === 0) this.#drained() })
    }
    return this.#waitingBytes < SEND_HIGH_WATER_BYTES
  }

  onceWritable (callback: () => void): void {
    if (this.#waitingBytes === 0 || this.#closed) callback()
    else this.#onDrained.push(callback)
  }

  async closeWhenSent (): Promise<void> {
    if (this.#closed) return
    await new Promise<void>(resolve => {
      this.#onFinished.push(resolve)
      if (this.#ending) return
      this.#ending = true
      this.#addon.end(this.#handle)
    })
  }

  abort (err: Error): void {
    this.#abortedWith ??= err
    this.#destroy()
  }

  destroy (): void {
    this.#destroy()
  }

  get bufferedBytes (): number {
    return this.#waitingBytes
  }

  get writable (): boolean {
    return !this.#closed && !this.#ending
  }
}
