import { NativeTlsError } from '../errors.js'
import { isResetCode, TUNNEL_WINDOW_BYTES, TunnelResetError, type TunnelEnd } from '../tunnel-end.js'
import { NativeTlsEvent, type NativeTlsAddon, type NativeTlsContext, type NativeTlsHandle } from './addon.js'
import type { Socket } from 'node:net'

/** Ciphertext waiting for the kernel beyond which `send` asks the pipe to wait for the drain. */
const SEND_HIGH_WATER_BYTES = 256 * 1024

/** The file descriptor under a connected net.Socket (Node keeps it on the socket's handle). */
function socketFd (socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd
  if (typeof fd !== 'number' || fd < 0) throw new NativeTlsError('the socket has no file descriptor to hand to native TLS', 'ERR_TLS')
  return fd
}

/**
 * A TunnelEnd over a TLS session of the native addon (native-tls.c): a data channel socket
 * whose encryption and byte moving run in native code on this thread's event loop, handing
 * JavaScript each arrival in one piece. Flow control as for SocketTunnelEnd: reading stops
 * once TUNNEL_WINDOW_BYTES are not yet handed on, so a slow rpc-server holds the sender back
 * through TCP. Not half-open, as the channel's Node TLS sockets are not: once the far end ended
 * its half, this end ends its own, and the session closes when both are done.
 */
export class NativeTlsTunnelEnd implements TunnelEnd {
  readonly #addon: NativeTlsAddon
  readonly #handle: NativeTlsHandle
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

  private constructor (addon: NativeTlsAddon, context: NativeTlsContext, socket: Socket, server: boolean) {
    this.#addon = addon
    const fd = socketFd(socket)
    this.#handle = addon.open(context, fd, server, (kind, value, code) => { this.#event(kind, value, code) })
    // A client's socket would read the server's bytes itself: only its duplicate stays open.
    if (server) this.#holder = socket
    else socket.destroy()
  }

  /**
   * Runs a TLS handshake on `socket` (connected; a server's accepted with pauseOnConnect, so
   * that Node has read nothing of it) and resolves with the session once it is done; its
   * `peerSha256` is then the fingerprint the caller pins. The session owns the socket from here.
   * Rejects with a NativeTlsError when the handshake fails or takes longer than `timeoutMs`,
   * and with the signal's reason when `signal` aborts first.
   */
  static async handshake (addon: NativeTlsAddon, context: NativeTlsContext, socket: Socket, server: boolean, timeoutMs: number, signal?: AbortSignal): Promise<NativeTlsTunnelEnd> {
    const end = new NativeTlsTunnelEnd(addon, context, socket, server)
    const onAbort = (): void => { end.abort(signal?.reason as Error) }
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        end.abort(new NativeTlsError(`no TLS session within ${timeoutMs} ms`, 'ETIMEDOUT'))
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
      case NativeTlsEvent.HANDSHAKE:
        this.#peerSha256 = value as string
        // Nothing is read until the pipe takes data (onData): a session's first bytes wait in TLS.
        this.#addon.setReading(this.#handle, false)
        this.#onHandshake?.()
        break
      case NativeTlsEvent.DATA: {
        const data = value as Buffer
        this.#unreleased += data.byteLength
        if (this.#unreleased >= TUNNEL_WINDOW_BYTES) this.#setReading(false)
        this.#onData?.([data])
        break
      }
      case NativeTlsEvent.END:
        this.#peerEnded = true
        for (const listener of this.#onEnd.splice(0)) listener()
        if (!this.#ending) void this.closeWhenSent()
        else this.#closeIfDone()
        break
      case NativeTlsEvent.DRAINED:
        this.#waitingBytes = 0
        for (const callback of this.#onDrained.splice(0)) callback()
        break
      case NativeTlsEvent.ERROR: {
        const message = value as string
        const errorCode = code ?? 'ERR_TLS'
        this.#failure ??= isResetCode(errorCode) ? new TunnelResetError(message) : new NativeTlsError(message, errorCode)
        this.#destroy()
        break
      }
      case NativeTlsEvent.FINISHED:
        this.#finished = true
        for (const callback of this.#onFinished.splice(0)) callback()
        this.#closeIfDone()
        break
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

  #closeIfDone (): void {
    if (this.#peerEnded && this.#finished) this.#destroy()
  }

  #destroy (): void {
    if (this.#closed) return
    this.#closed = true
    this.#addon.destroy(this.#handle)
    this.#holder?.destroy()
    const err = this.#abortedWith ?? this.#failure
    this.#onHandshake?.(err ?? new NativeTlsError('the TLS session closed during its handshake', 'ECONNRESET'))
    for (const callback of this.#onFinished.splice(0)) callback()
    // Like a socket's 'close', after the current task.
    process.nextTick(() => {
      for (const listener of this.#onClose.splice(0)) listener(err)
    })
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

  send (data: Uint8Array): boolean {
    if (!this.writable) return false
    this.#waitingBytes = this.#addon.write(this.#handle, data)
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

  get writable (): boolean {
    return !this.#closed && !this.#ending
  }
}
