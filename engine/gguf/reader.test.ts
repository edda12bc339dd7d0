import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { f32ToF16Bits } from './f16.js'
import {
  GgmlType, GgufFileError, GgufValueType, GgufWriteAbortedError, GgufWriteError, NotGgufError, TensorShapeError, TruncatedGgufError,
  UnknownTensorTypeError, UnsupportedGgufVersionError, readGgufInfo, writeGgufFile, type GgufContent, type GgufValue, i32Array, str, strArray, u32
} from './index.js'

// Values i * step, so the test can recompute any element.
const ramp = (step: number) => () => {
  let next = 0
  return (out: Float32Array) => { for (let i = 0; i < out.length; i++) out[i] = (next++) * step }
}

const metadata = new Map<string, GgufValue>([
  ['general.architecture', str('llama')],
  ['general.alignment', u32(64)],
  ['test.u8', { type: GgufValueType.UINT8, value: 255 }],
  ['test.i8', { type: GgufValueType.INT8, value: -128 }],
  ['test.u16', { type: GgufValueType.UINT16, value: 65535 }],
  ['test.i16', { type: GgufValueType.INT16, value: -32768 }],
  ['test.i32', { type: GgufValueType.INT32, value: -2 }],
  ['test.f32', { type: GgufValueType.FLOAT32, value: 0.5 }],
  ['test.f64', { type: GgufValueType.FLOAT64, value: Math.PI }],
  ['test.bool', { type: GgufValueType.BOOL, value: true }],
  ['test.u64', { type: GgufValueType.UINT64, value: 2n ** 63n + 5n }],
  ['test.i64', { type: GgufValueType.INT64, value: -(2n ** 40n) }],
  ['test.unicode', str('héllo ✓ 日本')],
  ['test.strings', strArray(['a', '', 'Ġthe', '<|im_end|>'])],
  ['test.ints', i32Array([1, -1, 2 ** 31 - 1])]
])

const content: GgufContent = {
  metadata,
  tensors: [
    { name: 'norm.weight', type: GgmlType.F32, dims: [7], values: ramp(1) },
    { name: 'big.weight', type: GgmlType.F16, dims: [64, 5000], values: ramp(2 ** -10) },
    { name: 'quant.weight', type: GgmlType.Q8_0, dims: [64, 3, 2], values: ramp(0.01) }
  ]
}

describe('GGUF writer and reader', () => {
  let dir: string
  let path: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'llmesh-gguf-'))
    path = join(dir, 'model.gguf')
    await writeGgufFile(path, content)
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('reads back the metadata and tensor layout that was written', async () => {
    const info = await readGgufInfo(path)
    assert.equal(info.version, 3)
    assert.deepEqual(info.metadata, metadata)
    assert.equal(info.alignment, 64)
    assert.equal(info.dataOffset % 64, 0)
    assert.deepEqual(info.tensors.map(({ name, type, typeName, dims, byteSize }) => ({ name, type, typeName, dims, byteSize })), [
      { name: 'norm.weight', type: GgmlType.F32, typeName: 'f32', dims: [7], byteSize: 28 },
      { name: 'big.weight', type: GgmlType.F16, typeName: 'f16', dims: [64, 5000], byteSize: 64 * 5000 * 2 },
      { name: 'quant.weight', type: GgmlType.Q8_0, typeName: 'q8_0', dims: [64, 3, 2], byteSize: 12 * 34 }
    ])
    assert.deepEqual(info.tensors.map(t => t.offset), [0, 64, 64 + 640_000])
    assert.equal(info.fileSize, info.dataOffset + 64 + 640_000 + 448, 'every tensor, the last included, is padded to the alignment')
  })

  it('stores the values where the tensor infos point, across chunk boundaries', async () => {
    const info = await readGgufInfo(path)
    const file = await readFile(path)
    const norm = info.tensors[0]
    const floats = new Float32Array(file.buffer.slice(file.byteOffset + info.dataOffset + norm.offset, file.byteOffset + info.dataOffset + norm.offset + norm.byteSize))
    assert.deepEqual([...floats], [0, 1, 2, 3, 4, 5, 6])
    const big = info.tensors[1]
    for (const index of [0, 1, 2047, 262_143, 262_144, 319_999]) {
      assert.equal(file.readUInt16LE(info.dataOffset + big.offset + index * 2), f32ToF16Bits(index * 2 ** -10), `element ${index}`)
    }
  })

  it('writes the same bytes for the same content', async () => {
    const again = join(dir, 'again.gguf')
    await writeGgufFile(again, content)
    assert.ok((await readFile(again)).equals(await readFile(path)))
  })

  it('says when the file is missing or not GGUF', async () => {
    await assert.rejects(readGgufInfo(join(dir, 'missing.gguf')), (err: Error) => err instanceof GgufFileError && /does not exist/.test(err.message))
    const text = join(dir, 'readme.gguf')
    await writeFile(text, 'This is not a model, just some text that is long enough.\n')
    await assert.rejects(readGgufInfo(text), NotGgufError)
    const empty = join(dir, 'empty.gguf')
    await writeFile(empty, '')
    await assert.rejects(readGgufInfo(empty), NotGgufError)
  })

  it('rejects versions it cannot read', async () => {
    for (const version of [1, 4]) {
      const copy = join(dir, `v${version}.gguf`)
      const bytes = await readFile(path)
      bytes.writeUInt32LE(version, 4)
      await writeFile(copy, bytes)
      await assert.rejects(readGgufInfo(copy), (err: Error) => err instanceof UnsupportedGgufVersionError && err.message.includes(`version ${version}`))
    }
  })

  it('reports a truncated file wherever it was cut', async () => {
    const info = await readGgufInfo(path)
    const cuts = { 'the header': 10, 'the metadata': 200, 'the tensor infos': info.dataOffset - 20, 'the data': info.fileSize - 500 }
    for (const [where, length] of Object.entries(cuts)) {
      const copy = join(dir, 'cut.gguf')
      await writeFile(copy, (await readFile(path)).subarray(0, length))
      await assert.rejects(readGgufInfo(copy), (err: Error) => err instanceof TruncatedGgufError && err.message.includes(`after ${length} bytes`), `cut in ${where}`)
    }
  })

  it('rejects a tensor of a type llama.cpp does not know', async () => {
    const copy = join(dir, 'unknown-type.gguf')
    const bytes = await readFile(path)
    // The tensor info is: name, n_dims (u32), dims (u64 each), type (u32), offset (u64).
    const typeAt = bytes.indexOf('quant.weight') + 'quant.weight'.length + 4 + 3 * 8
    assert.equal(bytes.readUInt32LE(typeAt), GgmlType.Q8_0)
    bytes.writeUInt32LE(77, typeAt)
    await writeFile(copy, bytes)
    await assert.rejects(readGgufInfo(copy), (err: Error) => err instanceof UnknownTensorTypeError && /'quant\.weight' has ggml type 77/.test(err.message))
  })

  it('refuses shapes the type cannot store, before creating any file', async () => {
    const target = join(dir, 'bad-shape.gguf')
    const bad: GgufContent = { metadata, tensors: [{ name: 'odd.weight', type: GgmlType.Q8_0, dims: [48, 2], values: ramp(1) }] }
    await assert.rejects(writeGgufFile(target, bad), (err: Error) => err instanceof TensorShapeError && /multiple of 32/.test(err.message))
    assert.ok(!(await readdir(dir)).some(name => name.startsWith('bad-shape')))
  })

  it('removes the partial file when writing is cancelled or fails', async () => {
    const target = join(dir, 'cancelled.gguf')
    const controller = new AbortController()
    let tempSeen = false
    const writing = writeGgufFile(target, content, {
      signal: controller.signal,
      onProgress: () => {
        tempSeen = existsSync(`${target}.tmp-${process.pid}`)
        controller.abort()
      }
    })
    await assert.rejects(writing, GgufWriteAbortedError)
    assert.ok(tempSeen)
    assert.ok(!(await readdir(dir)).some(name => name.startsWith('cancelled')), 'neither the model nor its temporary file is left')

    await assert.rejects(writeGgufFile(join(dir, 'no-such-folder', 'x.gguf'), content), GgufWriteError)
  })

  it('keeps a file that is already in place when a new write fails', async () => {
    const target = join(dir, 'kept.gguf')
    await writeFile(target, 'old contents')
    const failing: GgufContent = { metadata, tensors: [{ name: 'x', type: GgmlType.F32, dims: [4], values: () => () => { throw new Error('generator failed') } }] }
    await assert.rejects(writeGgufFile(target, failing), /generator failed/)
    assert.equal(await readFile(target, 'utf8'), 'old contents')
    assert.deepEqual((await readdir(dir)).filter(name => name.startsWith('kept')), ['kept.gguf'])
  })
})
