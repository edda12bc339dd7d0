import { FramingError } from '../errors.js'
import { decodeHeader, encodeFrame, FRAME_HEADER_BYTES, type FrameLimits } from '../framing.js'
import { RPC_TUNNEL_PROTOCOL } from './constants.js'
import { RpcCreditExceededError, RpcTunnelFrameError } from './errors.js'
import { TUNNEL_WINDOW_BYTES, TunnelResetError, type TunnelEnd } from './tunnel-end.js'
import type { Stream, StreamMessageEvent } from '@libp2p/interface'

/**
 * Frame types of a tunnel stream. Each side starts with TUNNEL_WINDOW_BYTES of credit toward the
 * other and sends no more data than its credit; the receiver grants credit back as it hands data
 * to its socket (rpc-server's or llama-server's) and the socket takes it.
 */
export const TunnelFrameType = {
  /** ggml-rpc bytes, passed on unchanged */
  data: 1,
  /** u64: bytes of data the receiver grants the sender */
  credit: 2
} as const

/**
 * Credit is granted back in steps of this many bytes: a decode step's 11 KB do not each cost
 * a frame back, and the sender never waits for credit while the receiver keeps up.
 */
export const CREDIT_GRANT_BYTES = TUNNEL_WINDOW_BYTES / 4

/** The largest data frame: bigger sends are split. */
export const MAX_DATA_FRAME_BYTES = 256 * 1024

const LIMITS: FrameLimits = {
  protocol: RPC_TUNNEL_PROTOCOL,
  types: new Set(Object.values(TunnelFrameType)),
  maxPayloadBytes: MAX_DATA_FRAME_BYTES
}

/** A credit frame's payload. */
const CREDIT_PAYLOAD_BYTES = 8

// A message is one buffer, or a list of them (iterable, so no copy is needed to read it).
function chunksOf (data: StreamMessageEvent['data']): Iterable<Uint8Array> {
  return data instanceof Uint8Array ? [data] : data
}

/**
 * One side of a tunnel stream with credit-based flow control, the same on every transport:
 * pausing a QUIC stream does not hold its sender back, so backpressure is the protocol's own.
 * `push` decodes what arrives, `send` frames what goes out and queues what exceeds the credit.
 */
export class CreditStream implements TunnelEnd {
  readonly stream: Stream
  /** bytes this side may still send */
  #credit = TUNNEL_WINDOW_BYTES
  /** bytes the remote may still send */
  #granted = TUNNEL_WINDOW_BYTES
  /** received bytes handed on and taken, not yet granted back */
  #released = 0
  readonly #queue: Uint8Array[] = []
  #streamFull = false
  #closeWhenSent = false
  readonly #writable: Array<() => void> = []
  // Incoming frame being read: its header, then a data payload passed on as it arrives.
  readonly #header = new Uint8Array(FRAME_HEADER_BYTES)
  #headerFilled = 0
  #type = 0
  #payloadLeft = 0
  readonly #creditPayload = new Uint8Array(CREDIT_PAYLOAD_BYTES)

  constructor (stream: Stream) {
    this.stream = stream
    stream.addEventListener('drain', () => {
      this.#streamFull = false
      this.#flush()
    })
  }

  onData (listener: (parts: Uint8Array[]) => void): void {
    this.stream.addEventListener('message', event => {
      const parts: Uint8Array[] = []
      try {
        for (const chunk of chunksOf(event.data)) parts.push(...this.push(chunk))
      } catch (err) {
        this.stream.abort(err as Error)
        return
      }
      listener(parts)
    })
  }

  onEnd (listener: () => void): void {
    this.stream.addEventListener('end', listener, { once: true })
  }

  onClose (listener: (err?: Error) => void): void {
    this.stream.addEventListener('close', event => {
      const err = event.error ?? undefined
      listener(err?.name === 'StreamResetError' ? new TunnelResetError('the stream was reset') : err)
    }, { once: true })
  }

  abort (err: Error): void {
    this.stream.abort(err)
  }

  get writable (): boolean {
    return this.stream.status === 'open'
  }

  /** True when data waits for credit or for the stream's send buffer. */
  get blocked (): boolean {
    return this.#queue.length > 0 || this.#streamFull
  }

  /** Calls `callback` once nothing waits any more (at once if nothing does). */
  onceWritable (callback: () => void): void {
    if (!this.blocked) callback()
    else this.#writable.push(callback)
  }

  /**
   * Decodes the next chunk from the stream; returns the data it carries, in order. Throws a
   * FramingError on a bad frame and an RpcCreditExceededError when the remote sends more than
   * it was granted.
   */
  push (chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = []
    let offset = 0
    while (offset < chunk.length) {
      if (this.#payloadLeft > 0) {
        const n = Math.min(this.#payloadLeft, chunk.length - offset)
        const part = chunk.subarray(offset, offset + n)
        if (this.#type === TunnelFrameType.data) {
          out.push(part)
        } else {
          this.#creditPayload.set(part, CREDIT_PAYLOAD_BYTES - this.#payloadLeft)
        }
        offset += n
        this.#payloadLeft -= n
        if (this.#payloadLeft === 0 && this.#type === TunnelFrameType.credit) this.#credited()
        continue
      }
      const n = Math.min(FRAME_HEADER_BYTES - this.#headerFilled, chunk.length - offset)
      this.#header.set(chunk.subarray(offset, offset + n), this.#headerFilled)
      this.#headerFilled += n
      offset += n
      if (this.#headerFilled < FRAME_HEADER_BYTES) continue
      this.#headerFilled = 0
      const { type, length } = this.#decodeHeader()
      if (type === TunnelFrameType.credit && length !== CREDIT_PAYLOAD_BYTES) throw new RpcCreditExceededError(`a credit frame of ${length} bytes`)
      if (type === TunnelFrameType.data) {
        if (length > this.#granted) throw new RpcCreditExceededError(`${length} bytes of data with ${this.#granted} bytes of credit`)
        this.#granted -= length
      }
      this.#type = type
      this.#payloadLeft = length
    }
    return out
  }

  #decodeHeader (): { type: number, length: number } {
    try {
      return decodeHeader(this.#header, LIMITS)
    } catch (err) {
      if (err instanceof FramingError) throw new RpcTunnelFrameError(err.message)
      throw err
    }
  }

  /** The receiver took `bytes` of the data `push` returned: grants them back in CREDIT_GRANT_BYTES steps. */
  release (bytes: number): void {
    this.#released += bytes
    if (this.#released < CREDIT_GRANT_BYTES || this.stream.writeStatus !== 'writable') return
    const payload = new Uint8Array(CREDIT_PAYLOAD_BYTES)
    new DataView(payload.buffer).setBigUint64(0, BigInt(this.#released))
    this.#granted += this.#released
    this.#released = 0
    // Credit frames skip the data queue: they must flow while data waits for credit.
    if (!this.stream.send(encodeFrame(TunnelFrameType.credit, payload))) this.#streamFull = true
  }

  /** Sends `parts` as data frames within the credit, queueing the rest; false when something now waits (see `onceWritable`). */
  send (...parts: Uint8Array[]): boolean {
    // One frame for them all where the credit allows: each frame costs an encrypted write of
    // several segments, a credit update back and a wake-up on each side.
    const data = parts.length === 1 ? parts[0] : Buffer.concat(parts)
    if (data.byteLength > 0) this.#queue.push(data)
    this.#flush()
    return !this.blocked
  }

  /** Closes the stream for writing once every queued byte is sent. */
  async closeWhenSent (): Promise<void> {
    this.#closeWhenSent = true
    if (this.#queue.length === 0) await this.stream.close()
  }

  #credited (): void {
    const bytes = new DataView(this.#creditPayload.buffer).getBigUint64(0)
    // More credit than a window means the remote grants what it never received.
    if (bytes > BigInt(TUNNEL_WINDOW_BYTES) - BigInt(this.#credit)) throw new RpcCreditExceededError(`a grant of ${bytes} bytes beyond the window`)
    this.#credit += Number(bytes)
    this.#flush()
  }

  #flush (): void {
    while (this.#queue.length > 0 && this.#credit > 0 && this.stream.writeStatus === 'writable') {
      const next = this.#queue[0]
      const n = Math.min(next.byteLength, this.#credit, MAX_DATA_FRAME_BYTES)
      const part = n === next.byteLength ? next : next.subarray(0, n)
      if (n === next.byteLength) this.#queue.shift()
      else this.#queue[0] = next.subarray(n)
      this.#credit -= n
      if (!this.stream.send(encodeFrame(TunnelFrameType.data, part))) this.#streamFull = true
    }
    if (this.#queue.length === 0 && this.#closeWhenSent && this.stream.writeStatus === 'writable') {
      this.stream.close().catch(err => { this.stream.abort(err as Error) })
    }
    if (!this.blocked) {
      for (const callback of this.#writable.splice(0)) callback()
    }
  }
}
