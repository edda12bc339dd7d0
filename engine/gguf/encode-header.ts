import { GGUF_MAGIC, GGUF_VERSION, GgufValueType } from './constants.js'
import type { GgmlType } from './tensor-types.js'
import type { GgufItemType, GgufValue } from './values.js'

/** What the header says about one tensor. */
export interface TensorHeaderEntry {
  name: string
  type: GgmlType
  /** ggml order: ne0 (the row length) first */
  dims: readonly number[]
  /** byte offset inside the data section */
  offset: number
}

/** Encodes the GGUF header, metadata and tensor infos (everything before the data section's padding). */
export function encodeGgufHeader (metadata: ReadonlyMap<string, GgufValue>, tensors: readonly TensorHeaderEntry[]): Buffer {
  const out = new ChunkList()
  out.push(GGUF_MAGIC)
  out.u32(GGUF_VERSION)
  out.u64(tensors.length)
  out.u64(metadata.size)
  for (const [key, value] of metadata) {
    out.string(key)
    out.u32(value.type)
    if (value.type === GgufValueType.ARRAY) {
      out.u32(value.itemType)
      out.u64(value.value.length)
      for (const item of value.value) out.scalar(value.itemType, item)
    } else {
      out.scalar(value.type, value.value)
    }
  }
  for (const tensor of tensors) {
    out.string(tensor.name)
    out.u32(tensor.dims.length)
    for (const dim of tensor.dims) out.u64(dim)
    out.u32(tensor.type)
    out.u64(tensor.offset)
  }
  return out.concat()
}

// Collects small little-endian pieces; Buffer.concat joins them once at the end.
class ChunkList {
  private readonly chunks: Buffer[] = []

  push (chunk: Buffer): void {
    this.chunks.push(chunk)
  }

  u32 (value: number): void {
    const b = Buffer.alloc(4)
    b.writeUInt32LE(value)
    this.push(b)
  }

  u64 (value: number | bigint): void {
    const b = Buffer.alloc(8)
    b.writeBigUInt64LE(BigInt(value))
    this.push(b)
  }

  string (value: string): void {
    const bytes = Buffer.from(value, 'utf8')
    this.u64(bytes.length)
    this.push(bytes)
  }

  scalar (type: GgufItemType, value: number | bigint | boolean | string): void {
    if (type === GgufValueType.STRING) {
      this.string(String(value))
      return
    }
    const b = Buffer.alloc(SCALAR_BYTES[type])
    switch (type) {
      case GgufValueType.UINT8: b.writeUInt8(Number(value)); break
      case GgufValueType.INT8: b.writeInt8(Number(value)); break
      case GgufValueType.UINT16: b.writeUInt16LE(Number(value)); break
      case GgufValueType.INT16: b.writeInt16LE(Number(value)); break
      case GgufValueType.UINT32: b.writeUInt32LE(Number(value)); break
      case GgufValueType.INT32: b.writeInt32LE(Number(value)); break
      case GgufValueType.FLOAT32: b.writeFloatLE(Number(value)); break
      case GgufValueType.BOOL: b.writeUInt8(value === true ? 1 : 0); break
      case GgufValueType.UINT64: b.writeBigUInt64LE(BigInt(value)); break
      case GgufValueType.INT64: b.writeBigInt64LE(BigInt(value)); break
      case GgufValueType.FLOAT64: b.writeDoubleLE(Number(value)); break
    }
    this.push(b)
  }

  concat (): Buffer {
    return Buffer.concat(this.chunks)
  }
}

/** Bytes a scalar of each type takes; for a string, only its length prefix (the text follows). */
export const SCALAR_BYTES: Readonly<Record<GgufItemType, number>> = {
  [GgufValueType.UINT8]: 1,
  [GgufValueType.INT8]: 1,
  [GgufValueType.UINT16]: 2,
  [GgufValueType.INT16]: 2,
  [GgufValueType.UINT32]: 4,
  [GgufValueType.INT32]: 4,
  [GgufValueType.FLOAT32]: 4,
  [GgufValueType.BOOL]: 1,
  [GgufValueType.STRING]: 8,
  [GgufValueType.UINT64]: 8,
  [GgufValueType.INT64]: 8,
  [GgufValueType.FLOAT64]: 8
}
