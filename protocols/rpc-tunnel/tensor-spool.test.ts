import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { TensorSpool } from './tensor-spool.js'

describe('tensor spool', () => {
  let dir: string

  before(async () => { dir = await mkdtemp(join(tmpdir(), 'llmesh-tensor-spool-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('writes the parts it is given, in order, to a file only its owner reads', async () => {
    const backlog = { bytes: 0, maxBytes: 64 * 1024 * 1024 }
    // Parts of many sizes, together more than one write batch.
    const parts = Array.from({ length: 40 }, (_, i) => randomBytes(1 + i * 4099))
    const spool = new TensorSpool(join(dir, 'whole'), backlog, Promise.resolve())
    for (const part of parts) spool.add(part)
    assert.equal(spool.bytes, parts.reduce((sum, part) => sum + part.byteLength, 0))
    assert.equal(await spool.close(), true)
    assert.deepEqual(await readFile(join(dir, 'whole')), Buffer.concat(parts))
    assert.equal((await stat(join(dir, 'whole'))).mode & 0o777, 0o600)
    assert.equal(backlog.bytes, 0, 'nothing is left waiting for the disk')
  })

  it('gives up, leaving no file, when more data waits for the disk than the backlog allows', async () => {
    const backlog = { bytes: 0, maxBytes: 3 * 1024 * 1024 }
    const spool = new TensorSpool(join(dir, 'behind'), backlog, Promise.resolve())
    // Given at once, before any write can finish: the backlog fills up.
    for (let i = 0; i < 8; i++) spool.add(randomBytes(1024 * 1024))
    assert.equal(await spool.close(), false)
    assert.ok(!(await readdir(dir)).includes('behind'))
    assert.equal(backlog.bytes, 0)
  })

  it('leaves no file when its data is discarded part-way', async () => {
    const backlog = { bytes: 0, maxBytes: 64 * 1024 * 1024 }
    const spool = new TensorSpool(join(dir, 'cut-off'), backlog, Promise.resolve())
    spool.add(randomBytes(3 * 1024 * 1024))
    await spool.discard()
    assert.ok(!(await readdir(dir)).includes('cut-off'))
    assert.equal(backlog.bytes, 0)
  })

  it('ends without its data, never throwing, when its file cannot be made', async () => {
    const backlog = { bytes: 0, maxBytes: 64 * 1024 * 1024 }
    const spool = new TensorSpool(join(dir, 'no-such-folder', 'file'), backlog, Promise.resolve())
    spool.add(randomBytes(2 * 1024 * 1024))
    assert.equal(await spool.close(), false)
    assert.equal(backlog.bytes, 0)
  })
})
