import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { mesh, meshOk } from './mesh-harness.js'

describe('mesh data dir handling', { timeout: 120_000 }, () => {
  let root: string
  before(async () => { root = await mkdtemp(join(tmpdir(), 'llmesh-datadir-')) })
  after(async () => { await rm(root, { recursive: true, force: true }) })

  it('init creates key, CA and API key as 0600 files and refuses to overwrite without --force', async () => {
    const home = join(root, 'cluster')
    assert.match(await meshOk(home, ['init']), /^created cluster llmesh-[0-9a-f]+ in /)
    for (const file of ['node.key', 'ca.key', 'api-key']) assert.equal((await stat(join(home, file))).mode & 0o777, 0o600, file)
    const again = await mesh(home, ['init'])
    assert.equal(again.code, 1)
    assert.match(again.stderr, /^mesh: .* already holds cluster llmesh-[0-9a-f]+; pass --force to replace it/)
    const before = JSON.parse(await readFile(join(home, 'cluster.json'), 'utf8')) as { clusterId: string }
    await meshOk(home, ['init', '--force'])
    const after = JSON.parse(await readFile(join(home, 'cluster.json'), 'utf8')) as { clusterId: string }
    assert.notEqual(after.clusterId, before.clusterId)
  })

  it('start on an empty data dir says what to run instead of creating an identity', async () => {
    const home = join(root, 'empty')
    const result = await mesh(home, ['start', '--role', 'worker', '--listen', '/ip4/127.0.0.1/tcp/0'])
    assert.equal(result.code, 1)
    assert.match(result.stderr, /^mesh: .* holds no cluster .*run "mesh init".*"mesh join <invite>"/)
    await assert.rejects(stat(join(home, 'node.key')))
  })

  it('start with a corrupt node key refuses instead of making a new identity', async () => {
    const home = join(root, 'corrupt')
    await meshOk(home, ['init'])
    await writeFile(join(home, 'node.key'), 'garbage')
    const result = await mesh(home, ['start', '--role', 'coordinator', '--listen', '/ip4/127.0.0.1/tcp/0'])
    assert.equal(result.code, 1)
    assert.match(result.stderr, /^mesh: the node key .*node\.key is corrupt; restore it from a backup/)
    assert.equal(await readFile(join(home, 'node.key'), 'utf8'), 'garbage')
  })

  it('start with the wrong role names the role in the certificate', async () => {
    const home = join(root, 'role')
    await meshOk(home, ['init'])
    const result = await mesh(home, ['start', '--role', 'worker', '--listen', '/ip4/127.0.0.1/tcp/0'])
    assert.equal(result.code, 1)
    assert.match(result.stderr, /^mesh: this node's certificate is for the coordinator role; start it with --role coordinator/)
  })

  it('status without a running node says so and exits non-zero', async () => {
    const result = await mesh(join(root, 'cluster'), ['status'])
    assert.equal(result.code, 1)
    assert.match(result.stderr, /^mesh: no running llmesh node found for data dir/)
  })
})
