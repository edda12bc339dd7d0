import type { Socket } from 'node:net'

/**
 * One end of a connection that carries a ggml-rpc session, as the pipe (pipe.ts) drives it.
 * Between coordinator and worker: a libp2p tunnel stream with the tunnel's credit flow control
 * (credit-stream.ts), or a socket of the direct data channel (data-channel.ts). On either
 * side, the local connection to llama-server or rpc-server is one too. Each receiver buffers
 * at most TUNNEL_WINDOW_BYTES it has not handed on, and the sender is held back by the
 * carrier's own flow control beyond that.
 */
export interface TunnelEnd {
  /** Calls `listener` with the ggml-rpc bytes of each arrival, in order. */
  onData: (listener: (parts: Uint8Array[]) => void) => void
  /** Calls `listener` once the far end has sent everything and closed its sending half. */
  onEnd: (listener: () => void) => void
  /**
   * Calls `listener` once the carrier is closed both ways, with the error that closed it
   * (undefined after a clean close; a TunnelResetError when the far end reset it).
   */
  onClose: (listener: (err?: Error) => void) => void
  /** The receiver handed on `bytes` of what arrived and its socket took them: the far end may send that much more. */
  release: (bytes: number) => void
  /** Sends `parts`, in one write where the carrier can; false when it now waits for the carrier (see `onceWritable`). */
  send: (...parts: Uint8Array[]) => boolean
  /** Calls `callback` once nothing waits to be sent (at once if nothing does). */
  onceWritable: (callback: () => void) => void
  /** Closes the sending half once every byte waiting is sent. */
  closeWhenSent: () => Promise<void>
  /** Closes both ways at once; `onClose` listeners get `err`. */
  abort: (err: Error) => void
  /** True while this end may still send. */
  readonly writable: boolean
}

/**
 * The local connection to llama-server or rpc-server, as the pipe drives it: a TunnelEnd whose
 * far end is a local process, which the pipe may also close without an error.
 */
export interface LocalEnd extends TunnelEnd {
  /** Closes both ways at once, as a clean close: `onClose` listeners get no error. */
  destroy: () => void
  /** Bytes sent that the kernel has not taken yet. */
  readonly bufferedBytes: number
}

/** The far end reset the carrier instead of closing it. */
export class TunnelResetError extends Error {
  constructor (detail: string) {
    super(`the far end reset the tunnel (${detail})`)
    this.name = 'TunnelResetError'
  }
}

/**
 * The data a side may have in flight, not yet handed on by the receiver: the most a receiver
 * ever buffers for a session, on either carrier (a tunnel stream's credit, a socket's
 * read-ahead). Well under the 4 MiB that libp2p lets a stream hold unread before it resets it,
 * and far above a LAN's bandwidth-delay product.
 */
export const TUNNEL_WINDOW_BYTES = 2 * 1024 * 1024

// How a dropped TCP connection shows up on a socket: the far end's process died or destroyed it.
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED'])

/** True for the error code (errno name) of a TCP connection the far end dropped: a TunnelResetError on any carrier over a socket. */
export function isResetCode (code: string | undefined): boolean {
  return RESET_CODES.has(code ?? '')
}

/**
 * A TunnelEnd over a connected Node socket (the TLS socket of a data channel, or a local
 * connection). TCP is its flow control: the socket stops reading once TUNNEL_WINDOW_BYTES are
 * not yet handed on, so that a slow reader fills the kernel's buffers and the sender's writes wait.
 */
export class SocketTunnelEnd implements LocalEnd {
  readonly #socket: Socket
  #unreleased = 0
  #paused = false
  #abortedWith: Error | undefined
  #failure: Error | undefined

  constructor (socket: Socket) {
    this.#socket = socket
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.#failure ??= isResetCode(err.code) ? new TunnelResetError(err.message) : err
    })
  }

  onData (listener: (parts: Uint8Array[]) => void): void {
    this.#socket.on('data', (chunk: Buffer) => {
      this.#unreleased += chunk.byteLength
      if (this.#unreleased >= TUNNEL_WINDOW_BYTES && !this.#paused) {
        this.#paused = true
        this.#socket.pause()
      }
      listener([chunk])
    })
  }

  onEnd (listener: () => void): void {
    this.#socket.once('end', listener)
  }

  onClose (listener: (err?: Error) => void): void {
    this.#socket.once('close', () => { listener(this.#abortedWith ?? this.#failure) })
  }

  release (bytes: number): void {
    this.#unreleased -= bytes
    if (this.#paused && this.#unreleased < TUNNEL_WINDOW_BYTES) {
      this.#paused = false
      this.#socket.resume()
    }
  }

  send (...parts: Uint8Array[]): boolean {
    if (parts.length === 1) return this.#socket.write(parts[0])
    this.#socket.cork()
    let more = true
    for (const part of parts) more = this.#socket.write(part)
    this.#socket.uncork()
    return more
  }

  onceWritable (callback: () => void): void {
    if (!this.#socket.writableNeedDrain) callback()
    else this.#socket.once('drain', callback)
  }

  async closeWhenSent (): Promise<void> {
    // 'close' as well: a socket destroyed before it finished sending never calls end's callback.
    await new Promise<void>(resolve => {
      this.#socket.once('close', resolve)
      this.#socket.end(resolve)
    })
  }

  abort (err: Error): void {
    this.#abortedWith ??= err
    this.#socket.destroy()
  }

  destroy (): void {
    this.#socket.destroy()
  }

  get bufferedBytes (): number {
    return this.#socket.writableLength
  }

  get writable (): boolean {
    return this.#socket.writable && !this.#socket.destroyed
  }
}
