import { open, type FileHandle } from 'node:fs/promises'
import { alignUp, dataAlignment } from './align.js'
import { GGML_MAX_DIMS, GGML_MAX_NAME_LENGTH, GGUF_MAGIC, GGUF_READABLE_VERSIONS, GgufValueType } from './constants.js'
import { SCALAR_BYTES } from './encode-header.js'
import { GgufFileError, InvalidGgufError, NotGgufError, TensorShapeError, TruncatedGgufError, UnknownTensorTypeError, UnsupportedGgufVersionError } from './errors.js'
import { FileCursor } from './file-cursor.js'
import { type GgmlType, ggmlTypeLayout, ggmlTypeName, tensorByteSize } from './tensor-types.js'
import type { GgufItemType, GgufValue } from './values.js'

/** Where one tensor lives in a GGUF file and how big it is. */
export interface GgufTensorInfo {
  name: string
  type: GgmlType
  /** llama.cpp's name for the type, e.g. "f16", "q8_0" */
  typeName: string
  /** shape in ggml order: ne0 (the row length) first */
  dims: number[]
  /** byte offset inside the data section: the tensor starts at dataOffset + offset in the file */
  offset: number
  /** bytes of tensor data, without alignment padding */
  byteSize: number
}

/** What a GGUF file's header says, checked against the file's size. */
export interface GgufInfo {
  version: number
  /** metadata in file order, keyed by name, e.g. "llama.block_count" */
  metadata: Map<string, GgufValue>
  tensors: GgufTensorInfo[]
  /** file offset where tensor data starts */
  dataOffset: number
  alignment: number
  fileSize: number
}

/**
 * Reads and validates the header, metadata and tensor infos of a GGUF file without loading
 * tensor data. Throws a GgufError subclass: GgufFileError, NotGgufError,
 * UnsupportedGgufVersionError, TruncatedGgufError, UnknownTensorTypeError, TensorShapeError
 * or InvalidGgufError.
 */
export async function readGgufInfo (path: string): Promise<GgufInfo> {
  let handle: FileHandle
  try {
    handle = await open(path, 'r')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const reason = code === 'ENOENT' ? 'does not exist; check the path' : `cannot be opened (${code ?? String(err)})`
    throw new GgufFileError(`model file ${path} ${reason}`, { cause: err })
  }
  try {
    const stats = await handle.stat()
    if (!stats.isFile()) throw new GgufFileError(`model file ${path} is not a regular file; give the path of a .gguf file`)
    return await parse(new FileCursor(handle, path, stats.size))
  } finally {
    await handle.close()
  }
}

async function parse (cursor: FileCursor): Promise<GgufInfo> {
  const { path } = cursor
  if (cursor.remaining < GGUF_MAGIC.length) throw new NotGgufError(`${path} is not a GGUF model file: it is only ${cursor.fileSize} bytes long`)
  await cursor.need(GGUF_MAGIC.length, 'the magic bytes')
  if (!cursor.bytes(GGUF_MAGIC.length).equals(GGUF_MAGIC)) throw new NotGgufError(`${path} is not a GGUF model file: it does not start with "GGUF"`)

  await cursor.need(4 + 8 + 8, 'the header')
  const version = cursor.u32()
  if ((version & 0xffff) === 0) throw new UnsupportedGgufVersionError(`${path} is a big-endian GGUF file; llama.cpp here needs a little-endian one`)
  if (!GGUF_READABLE_VERSIONS.includes(version)) {
    throw new UnsupportedGgufVersionError(`${path} is GGUF version ${version}, but only versions ${GGUF_READABLE_VERSIONS.join(' and ')} are supported; convert the model with a current llama.cpp`)
  }
  const tensorCount = cursor.u64()
  const kvCount = cursor.u64()

  const metadata = new Map<string, GgufValue>()
  for (let i = 0n; i < kvCount; i++) {
    const key = await readString(cursor, `metadata key ${i}`)
    if (key === '') throw new InvalidGgufError(`${path} has an empty metadata key (entry ${i})`)
    if (metadata.has(key)) throw new InvalidGgufError(`${path} has the metadata key '${key}' twice`)
    metadata.set(key, await readValue(cursor, key))
  }
  const alignment = dataAlignment(metadata, path)

  const tensors: GgufTensorInfo[] = []
  const names = new Set<string>()
  for (let i = 0n; i < tensorCount; i++) {
    const tensor = await readTensorInfo(cursor, `tensor info ${i}`)
    if (names.has(tensor.name)) throw new InvalidGgufError(`${path} has two tensors named '${tensor.name}'`)
    names.add(tensor.name)
    tensors.push(tensor)
  }

  const dataOffset = tensors.length > 0 ? alignUp(cursor.position, alignment) : cursor.position
  let expectedOffset = 0
  for (const tensor of tensors) {
    // llama.cpp requires the tensors to be packed in header order, each padded to the alignment.
    if (tensor.offset !== expectedOffset) {
      throw new InvalidGgufError(`${path}: tensor '${tensor.name}' starts at data offset ${tensor.offset}, but GGUF requires ${expectedOffset}`)
    }
    const end = dataOffset + tensor.offset + tensor.byteSize
    if (end > cursor.fileSize) {
      throw new TruncatedGgufError(`${path} ends after ${cursor.fileSize} bytes, but tensor '${tensor.name}' needs bytes up to ${end}; the file is incomplete: copy or download it again`)
    }
    expectedOffset += alignUp(tensor.byteSize, alignment)
  }
  return { version, metadata, tensors, dataOffset, alignment, fileSize: cursor.fileSize }
}

async function readString (cursor: FileCursor, what: string): Promise<string> {
  await cursor.need(8, what)
  const length = cursor.u64()
  await cursor.need(length, what)
  return cursor.utf8(Number(length))
}

async function readValue (cursor: FileCursor, key: string): Promise<GgufValue> {
  const what = `the value of '${key}'`
  await cursor.need(4, what)
  const type = cursor.u32()
  if (type !== GgufValueType.ARRAY) {
    const itemType = checkItemType(type, key, cursor.path)
    return { type: itemType, value: await readScalar(cursor, itemType, what) } as GgufValue
  }
  await cursor.need(4 + 8, what)
  const itemType = checkItemType(cursor.u32(), key, cursor.path)
  const count = cursor.u64()
  // Checks a corrupt count against the file size before anything is allocated for it.
  await cursor.need(count * BigInt(SCALAR_BYTES[itemType]), what)
  const items: Array<number | bigint | boolean | string> = []
  for (let i = 0, n = Number(count); i < n; i++) {
    // Vocabularies hold hundreds of thousands of items: take the buffered ones without awaiting.
    items.push(readBufferedScalar(cursor, itemType) ?? await readScalar(cursor, itemType, what))
  }
  return { type: GgufValueType.ARRAY, itemType, value: items }
}

function checkItemType (type: number, key: string, path: string): GgufItemType {
  if (!(type in SCALAR_BYTES)) throw new InvalidGgufError(`${path}: metadata key '${key}' has value type ${type}, which GGUF does not define`)
  return type as GgufItemType
}

async function readScalar (cursor: FileCursor, type: GgufItemType, what: string): Promise<number | bigint | boolean | string> {
  if (type === GgufValueType.STRING) return await readString(cursor, what)
  await cursor.need(SCALAR_BYTES[type], what)
  return decodeScalar(cursor, type)
}

// The next value when all its bytes are already buffered; otherwise undefined, with the cursor unmoved.
function readBufferedScalar (cursor: FileCursor, type: GgufItemType): number | bigint | boolean | string | undefined {
  if (!cursor.buffered(SCALAR_BYTES[type])) return undefined
  if (type !== GgufValueType.STRING) return decodeScalar(cursor, type)
  const start = cursor.position
  const length = cursor.u64()
  if (cursor.buffered(length)) return cursor.utf8(Number(length))
  cursor.position = start
  return undefined
}

function decodeScalar (cursor: FileCursor, type: Exclude<GgufItemType, GgufValueType.STRING>): number | bigint | boolean {
  switch (type) {
    case GgufValueType.UINT8: return cursor.u8()
    case GgufValueType.INT8: return cursor.i8()
    case GgufValueType.UINT16: return cursor.u16()
    case GgufValueType.INT16: return cursor.i16()
    case GgufValueType.UINT32: return cursor.u32()
    case GgufValueType.INT32: return cursor.i32()
    case GgufValueType.FLOAT32: return cursor.f32()
    case GgufValueType.BOOL: return cursor.u8() !== 0
    case GgufValueType.UINT64: return cursor.u64()
    case GgufValueType.INT64: return cursor.i64()
    case GgufValueType.FLOAT64: return cursor.f64()
  }
}

async function readTensorInfo (cursor: FileCursor, what: string): Promise<GgufTensorInfo> {
  const { path } = cursor
  const name = await readString(cursor, what)
  if (Buffer.byteLength(name) > GGML_MAX_NAME_LENGTH) throw new InvalidGgufError(`${path}: tensor name '${name}' is longer than ggml's ${GGML_MAX_NAME_LENGTH} bytes`)
  await cursor.need(4, what)
  const dimCount = cursor.u32()
  if (dimCount > GGML_MAX_DIMS) throw new InvalidGgufError(`${path}: tensor '${name}' has ${dimCount} dimensions; ggml allows at most ${GGML_MAX_DIMS}`)
  await cursor.need(dimCount * 8 + 4 + 8, what)
  const dims: number[] = []
  for (let d = 0; d < dimCount; d++) {
    const dim = cursor.i64()
    if (dim < 0n || dim > BigInt(Number.MAX_SAFE_INTEGER)) throw new InvalidGgufError(`${path}: tensor '${name}' has dimension ${d} of size ${dim}`)
    dims.push(Number(dim))
  }
  const type = cursor.u32()
  if (ggmlTypeLayout(type) == null) {
    throw new UnknownTensorTypeError(`${path}: tensor '${name}' has ggml type ${type}, which this llama.cpp does not know; the model needs a newer llama.cpp or a different quantisation`)
  }
  const offset = cursor.u64()
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) throw new InvalidGgufError(`${path}: tensor '${name}' has data offset ${offset}, beyond any real file`)
  const byteSize = withPath(path, () => tensorByteSize(name, type, dims))
  return { name, type, typeName: ggmlTypeName(type), dims, offset: Number(offset), byteSize }
}

// Shape errors name the file, so that a caller validating a --model path gets a complete sentence.
function withPath<T> (path: string, compute: () => T): T {
  try {
    return compute()
  } catch (err) {
    if (err instanceof TensorShapeError) throw new TensorShapeError(`${path}: ${err.message}`, { cause: err })
    throw err
  }
}
