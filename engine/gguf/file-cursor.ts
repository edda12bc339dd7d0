import type { FileHandle } from 'node:fs/promises'
import { TruncatedGgufError } from './errors.js'

const READ_AHEAD = 1024 * 1024

/**
 * Reads little-endian values from a file front to back through a read-ahead buffer.
 * Call `need(n, what)` before reading n bytes: it loads them or, at the end of the file,
 * throws TruncatedGgufError naming the part of the file that is missing.
 */
export class FileCursor {
  position = 0
  private buffer = Buffer.alloc(0)
  private bufferStart = 0

  constructor (private readonly handle: FileHandle, readonly path: string, readonly fileSize: number) {}

  /** Bytes between the cursor and the end of the file. */
  get remaining (): number {
    return this.fileSize - this.position
  }

  /** Whether the next `bytes` bytes are already buffered (readable without need()). */
  buffered (bytes: number | bigint): boolean {
    return this.position + Number(bytes) <= this.bufferStart + this.buffer.length
  }

  /** Makes the next `bytes` bytes readable; `what` names them in the error if the file ends first. */
  async need (bytes: number | bigint, what: string): Promise<void> {
    if (bytes > this.remaining) {
      throw new TruncatedGgufError(`${this.path} ends after ${this.fileSize} bytes, in the middle of ${what}; the file is incomplete: copy or download it again`)
    }
    if (this.buffered(bytes)) return
    const count = Number(bytes)
    const length = Math.min(Math.max(count, READ_AHEAD), this.remaining)
    const buffer = Buffer.allocUnsafe(length)
    const { bytesRead } = await this.handle.read(buffer, 0, length, this.position)
    if (bytesRead < count) throw new TruncatedGgufError(`${this.path} shrank while it was being read; try again once nothing is writing to it`)
    this.buffer = buffer.subarray(0, bytesRead)
    this.bufferStart = this.position
  }

  private take (bytes: number): number {
    const at = this.position - this.bufferStart
    this.position += bytes
    return at
  }

  u8 (): number { return this.buffer.readUInt8(this.take(1)) }
  i8 (): number { return this.buffer.readInt8(this.take(1)) }
  u16 (): number { return this.buffer.readUInt16LE(this.take(2)) }
  i16 (): number { return this.buffer.readInt16LE(this.take(2)) }
  u32 (): number { return this.buffer.readUInt32LE(this.take(4)) }
  i32 (): number { return this.buffer.readInt32LE(this.take(4)) }
  f32 (): number { return this.buffer.readFloatLE(this.take(4)) }
  f64 (): number { return this.buffer.readDoubleLE(this.take(8)) }
  u64 (): bigint { return this.buffer.readBigUInt64LE(this.take(8)) }
  i64 (): bigint { return this.buffer.readBigInt64LE(this.take(8)) }

  /** The next `bytes` bytes decoded as UTF-8 (call need() first). */
  utf8 (bytes: number): string {
    const at = this.take(bytes)
    return this.buffer.toString('utf8', at, at + bytes)
  }

  /** The next `bytes` bytes as a Buffer (call need() first). */
  bytes (bytes: number): Buffer {
    const at = this.take(bytes)
    return this.buffer.subarray(at, at + bytes)
  }
}
