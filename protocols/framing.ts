import { once } from 'node:events'
import { FrameMagicError, FrameTooLargeError, FrameTruncatedError, FrameTypeError, FrameVersionError } from './errors.js'
import type { Stream } from '@libp2p/interface'

/** "LMSH": the first four bytes of every llmesh frame. */
export const FRAME_MAGIC = 0x4c4d5348
/** The framing version this build speaks. */
export const FRAME_VERSION = 1
/** magic(4) | version(2) | type(2) | payload_len(8), big-endian. */
export const FRAME_HEADER_BYTES = 16

/** One decoded frame. */
export interface Frame {
  type: number
  payload: Uint8Array
}

/** What a protocol accepts: its name (for messages), its message types and its payload cap. */
export interface FrameLimits {
  protocol: string
  types: ReadonlySet<number>
  maxPayloadBytes: number
}

/**
 * Encodes one frame: the 16-byte header followed by the payload, in one buffer (a stream's
 * encrypter would join a header and payload given apart anyway). Not zero-filled first: every
 * byte is written here, and filling the tunnel's quarter-megabyte data frames showed in its
 * bulk transfer profile.
 */
export function encodeFrame (type: number, payload: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafeSlow(FRAME_HEADER_BYTES + payload.byteLength)
  const view = new DataView(out.buffer, out.byteOffset, FRAME_HEADER_BYTES)
  view.setUint32(0, FRAME_MAGIC)
  view.setUint16(4, FRAME_VERSION)
  view.setUint16(6, type)
  view.setBigUint64(8, BigInt(payload.byteLength))
  out.set(payload, FRAME_HEADER_BYTES)
  return out
}

/** Validates a 16-byte header against the protocol's limits and returns its type and length. */
export function decodeHeader (header: Uint8Array, limits: FrameLimits): { type: number, length: number } {
  const view = new DataView(header.buffer, header.byteOffset, FRAME_HEADER_BYTES)
  const magic = view.getUint32(0)
  if (magic !== FRAME_MAGIC) throw new FrameMagicError(magic)
  const version = view.getUint16(4)
  if (version !== FRAME_VERSION) throw new FrameVersionError(version, FRAME_VERSION)
  const type = view.getUint16(6)
  if (!limits.types.has(type)) throw new FrameTypeError(type, limits.protocol)
  const length = view.getBigUint64(8)
  // Checked before any allocation, so a hostile length costs the receiver nothing.
  if (length > BigInt(limits.maxPayloadBytes)) throw new FrameTooLargeError(length, limits.maxPayloadBytes, limits.protocol)
  return { type, length: Number(length) }
}

type Chunk = Uint8Array | { subarray: () => Uint8Array }

/**
 * Reads validated frames from a byte source (a libp2p stream or any async iterable of
 * chunks). Throws a typed FramingError on the first bad frame.
 */
export class FrameReader {
  private readonly source: AsyncIterator<Chunk>
  private readonly limits: FrameLimits
  private buffered: Uint8Array = new Uint8Array(0)
  private ended = false

  constructor (source: AsyncIterable<Chunk>, limits: FrameLimits) {
    this.source = source[Symbol.asyncIterator]()
    this.limits = limits
  }

  /** The next frame, or undefined when the source ended cleanly between frames. */
  async next (): Promise<Frame | undefined> {
    if (!await this.fill(FRAME_HEADER_BYTES)) {
      if (this.buffered.byteLength === 0) return undefined
      throw new FrameTruncatedError(this.limits.protocol)
    }
    const { type, length } = decodeHeader(this.buffered.subarray(0, FRAME_HEADER_BYTES), this.limits)
    if (!await this.fill(FRAME_HEADER_BYTES + length)) throw new FrameTruncatedError(this.limits.protocol)
    const payload = this.buffered.slice(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length)
    this.buffered = this.buffered.subarray(FRAME_HEADER_BYTES + length)
    return { type, payload }
  }

  private async fill (bytes: number): Promise<boolean> {
    while (this.buffered.byteLength < bytes) {
      if (this.ended) return false
      const { done, value } = await this.source.next()
      if (done === true) {
        this.ended = true
        return false
      }
      const chunk = value instanceof Uint8Array ? value : value.subarray()
      const joined = new Uint8Array(this.buffered.byteLength + chunk.byteLength)
      joined.set(this.buffered)
      joined.set(chunk, this.buffered.byteLength)
      this.buffered = joined
    }
    return true
  }
}

/** Sends one frame, waiting for the stream's 'drain' event when its send buffer is full. */
export async function writeFrame (stream: Stream, type: number, payload: Uint8Array, signal?: AbortSignal): Promise<void> {
  if (stream.send(encodeFrame(type, payload))) return
  // Waiting for the event, not stream.onDrain(): see LIBP2P-NOTES.md on backpressure.
  await Promise.race([
    once(stream, 'drain', { signal }),
    once(stream, 'close', { signal }).then(() => { throw new Error('stream closed while sending') })
  ])
}
