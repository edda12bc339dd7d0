import { endianness } from 'node:os'
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { GGML_MAX_DIMS, GGML_MAX_NAME_LENGTH } from './constants.js'
import { alignUp, dataAlignment } from './align.js'
import { encodeGgufHeader, type TensorHeaderEntry } from './encode-header.js'
import { GgufError, GgufWriteAbortedError, GgufWriteError, TensorShapeError } from './errors.js'
import { encodeF16 } from './f16.js'
import { encodeQ8_0, Q8_0_BLOCK_BYTES, Q8_0_BLOCK_SIZE } from './q8-0.js'
import { GgmlType, ggmlTypeName, tensorByteSize } from './tensor-types.js'
import type { GgufValue } from './values.js'

/** One tensor to write; its values are produced on demand so that no whole tensor sits in memory. */
export interface GgufTensorSource {
  /** tensor name, e.g. "blk.0.attn_q.weight" */
  name: string
  /** storage type; the writer can encode F32, F16 and Q8_0 */
  type: GgmlType
  /** shape in ggml order: ne0 (the row length) first */
  dims: readonly number[]
  /** starts a pass over the values: each call of the returned function fills `out` with the next values in order */
  values: () => (out: Float32Array) => void
}

/** Everything a GGUF file holds: metadata in the order it is written, then the tensors. */
export interface GgufContent {
  metadata: ReadonlyMap<string, GgufValue>
  tensors: readonly GgufTensorSource[]
}

/** Options of writeGgufFile. */
export interface WriteGgufOptions {
  /** cancels the write; the partial file is removed and GgufWriteAbortedError thrown */
  signal?: AbortSignal
  /** called after every chunk with the bytes written so far and the final size */
  onProgress?: (writtenBytes: number, totalBytes: number) => void
}

/** Where each part of a GGUF file goes, computed before anything is written. */
export interface GgufLayout {
  header: Buffer
  alignment: number
  dataOffset: number
  tensors: Array<TensorHeaderEntry & { byteSize: number }>
  totalBytes: number
}

/** Values converted per chunk: 1 MiB of float32 input, a multiple of every block size. */
const CHUNK_VALUES = 256 * 1024

const WRITABLE_TYPES: ReadonlySet<GgmlType> = new Set([GgmlType.F32, GgmlType.F16, GgmlType.Q8_0])

/** Computes the header bytes, every tensor's offset and the file size, validating shapes and types. */
export function planGgufLayout (content: GgufContent): GgufLayout {
  const alignment = dataAlignment(content.metadata, 'the GGUF metadata to write')
  const names = new Set<string>()
  const tensors: GgufLayout['tensors'] = []
  let offset = 0
  for (const tensor of content.tensors) {
    if (names.has(tensor.name)) throw new TensorShapeError(`two tensors are named '${tensor.name}'; tensor names must be unique`)
    names.add(tensor.name)
    if (Buffer.byteLength(tensor.name) > GGML_MAX_NAME_LENGTH) throw new TensorShapeError(`tensor name '${tensor.name}' is longer than ggml's ${GGML_MAX_NAME_LENGTH} bytes`)
    if (!WRITABLE_TYPES.has(tensor.type)) throw new TensorShapeError(`tensor '${tensor.name}' asks for type ${GgmlType[tensor.type] ?? tensor.type}, but the writer only encodes f32, f16 and q8_0`)
    if (tensor.dims.length < 1 || tensor.dims.length > GGML_MAX_DIMS || tensor.dims.some(dim => !Number.isSafeInteger(dim) || dim < 1)) {
      throw new TensorShapeError(`tensor '${tensor.name}' has shape [${tensor.dims.join(', ')}]; it needs 1 to ${GGML_MAX_DIMS} positive whole dimensions`)
    }
    const byteSize = tensorByteSize(tensor.name, tensor.type, tensor.dims)
    tensors.push({ name: tensor.name, type: tensor.type, dims: tensor.dims, offset, byteSize })
    offset += alignUp(byteSize, alignment)
  }
  const header = encodeGgufHeader(content.metadata, tensors)
  const dataOffset = alignUp(header.length, alignment)
  return { header, alignment, dataOffset, tensors, totalBytes: dataOffset + offset }
}

/**
 * Writes a GGUF file by streaming each tensor in bounded chunks. The file appears at `path` only
 * when complete: it is written to `<path>.tmp-<pid>`, flushed to disk, then renamed; on any
 * error or abort the temporary file is removed. Returns the size written.
 */
export async function writeGgufFile (path: string, content: GgufContent, options: WriteGgufOptions = {}): Promise<{ bytes: number }> {
  if (endianness() !== 'LE') throw new GgufWriteError('writing GGUF files needs a little-endian machine')
  const layout = planGgufLayout(content)
  await checkTarget(path)
  const tempPath = join(dirname(path), `${basename(path)}.tmp-${process.pid}`)
  let handle: FileHandle | undefined
  try {
    handle = await open(tempPath, 'w')
    await streamContent(handle, content, layout, options)
    await handle.sync()
    await handle.close()
    handle = undefined
    await rename(tempPath, path)
    await syncDirectory(dirname(path))
  } catch (err) {
    await handle?.close().catch(() => undefined)
    await rm(tempPath, { force: true })
    if (err instanceof GgufError) throw err
    throw new GgufWriteError(`could not write ${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
  return { bytes: layout.totalBytes }
}

// Fails before the (possibly long) write for the mistakes a rename at the end would only then reveal.
async function checkTarget (path: string): Promise<void> {
  const folder = dirname(path)
  const folderStats = await stat(folder).catch(() => undefined)
  if (folderStats?.isDirectory() !== true) throw new GgufWriteError(`cannot write ${path}: the folder ${folder} does not exist; create it first`)
  if ((await stat(path).catch(() => undefined))?.isDirectory() === true) {
    throw new GgufWriteError(`cannot write ${path}: it is a folder; give a file path such as ${join(path, 'model.gguf')}`)
  }
}

async function streamContent (handle: FileHandle, content: GgufContent, layout: GgufLayout, options: WriteGgufOptions): Promise<void> {
  const values = new Float32Array(CHUNK_VALUES)
  // Two output buffers: one is encoded while the other is being written. emit() waits for the
  // previous write before starting the next, so at most one write is in flight.
  const buffers = [new ArrayBuffer(CHUNK_VALUES * 4), new ArrayBuffer(CHUNK_VALUES * 4)]
  let turn = 0
  let written = 0
  let pending: Promise<void> | undefined
  const emit = async (bytes: Uint8Array): Promise<void> => {
    await pending
    pending = writeAll(handle, bytes)
    written += bytes.length
    options.onProgress?.(written, layout.totalBytes)
  }
  try {
    await emit(layout.header)
    await emit(new Uint8Array(layout.dataOffset - layout.header.length))
    for (const [index, tensor] of content.tensors.entries()) {
      const { byteSize } = layout.tensors[index]
      const elements = tensor.dims.reduce((product, dim) => product * dim, 1)
      const next = tensor.values()
      for (let done = 0; done < elements; done += CHUNK_VALUES) {
        if (options.signal?.aborted === true) throw new GgufWriteAbortedError('writing the GGUF file was cancelled; the partial file was removed')
        const chunk = values.subarray(0, Math.min(CHUNK_VALUES, elements - done))
        next(chunk)
        const buffer = buffers[turn++ % 2]
        const bytes = encode(tensor.type, chunk, buffer)
        await emit(new Uint8Array(buffer, 0, bytes))
      }
      await emit(new Uint8Array(alignUp(byteSize, layout.alignment) - byteSize))
    }
    await pending
  } catch (err) {
    await pending?.catch(() => undefined)
    throw err
  }
}

// Encoders write in host byte order; writeGgufFile refuses big-endian hosts.
function encode (type: GgmlType, values: Float32Array, out: ArrayBuffer): number {
  switch (type) {
    case GgmlType.F32:
      new Float32Array(out, 0, values.length).set(values)
      return values.byteLength
    case GgmlType.F16:
      encodeF16(values, new Uint16Array(out, 0, values.length))
      return values.length * 2
    case GgmlType.Q8_0:
      encodeQ8_0(values, out)
      return (values.length / Q8_0_BLOCK_SIZE) * Q8_0_BLOCK_BYTES
    default:
      throw new TensorShapeError(`the writer cannot encode ${ggmlTypeName(type)}`)
  }
}

async function writeAll (handle: FileHandle, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) {
    const { bytesWritten } = await handle.write(bytes, at, bytes.length - at)
    at += bytesWritten
  }
}

// A rename is only durable once the directory entry itself reaches the disk.
async function syncDirectory (path: string): Promise<void> {
  const directory = await open(path, 'r')
  try {
    await directory.sync()
  } finally {
    await directory.close()
  }
}
