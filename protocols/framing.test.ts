import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { FrameMagicError, FrameTooLargeError, FrameTruncatedError, FrameTypeError, FrameVersionError } from './errors.js'
import { encodeFrame, FRAME_HEADER_BYTES, FRAME_MAGIC, FrameReader, type FrameLimits } from './framing.js'

const limits: FrameLimits = { protocol: '/test/1.0.0', types: new Set([1, 2]), maxPayloadBytes: 1024 }

async function * chunked (bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.byteLength; i += size) yield bytes.subarray(i, i + size)
}

function concat (...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts))
}

function header (fields: { magic?: number, version?: number, type?: number, length?: bigint }): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES)
  const view = new DataView(out.buffer)
  view.setUint32(0, fields.magic ?? FRAME_MAGIC)
  view.setUint16(4, fields.version ?? 1)
  view.setUint16(6, fields.type ?? 1)
  view.setBigUint64(8, fields.length ?? 0n)
  return out
}

describe('llmesh framing', () => {
  it('round-trips frames split at arbitrary chunk boundaries and ends cleanly', async () => {
    const a = new TextEncoder().encode('hello')
    const b = new Uint8Array(700).fill(7)
    for (const size of [1, 3, 16, 17, 1000]) {
      const reader = new FrameReader(chunked(concat(encodeFrame(1, a), encodeFrame(2, b), encodeFrame(1, new Uint8Array(0))), size), limits)
      assert.deepEqual(await reader.next(), { type: 1, payload: a })
      assert.deepEqual(await reader.next(), { type: 2, payload: b })
      assert.deepEqual(await reader.next(), { type: 1, payload: new Uint8Array(0) })
      assert.equal(await reader.next(), undefined)
    }
  })

  it('writes the header big-endian as magic | version | type | length', () => {
    const frame = encodeFrame(0x0102, new Uint8Array(3))
    assert.deepEqual([...frame.subarray(0, 16)], [0x4c, 0x4d, 0x53, 0x48, 0, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 3])
  })

  it('rejects a wrong magic, an unknown version and an unknown type with typed errors', async () => {
    await assert.rejects(new FrameReader(chunked(header({ magic: 0x47455420 }), 16), limits).next(), FrameMagicError)
    await assert.rejects(new FrameReader(chunked(header({ version: 2 }), 16), limits).next(), FrameVersionError)
    await assert.rejects(new FrameReader(chunked(header({ type: 9 }), 16), limits).next(), FrameTypeError)
  })

  it('rejects an oversized payload from the header alone, before any payload arrives', async () => {
    const err = await new FrameReader(chunked(header({ length: 1n << 62n }), 16), limits).next().catch((e: unknown) => e)
    assert.ok(err instanceof FrameTooLargeError)
    assert.equal(err.reason, 'oversized')
  })

  it('reports a stream that ends inside a header or a payload as truncated', async () => {
    await assert.rejects(new FrameReader(chunked(header({}).subarray(0, 9), 4), limits).next(), FrameTruncatedError)
    await assert.rejects(new FrameReader(chunked(concat(header({ length: 10n }), new Uint8Array(4)), 4), limits).next(), FrameTruncatedError)
  })
})
