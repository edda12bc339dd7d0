import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { LevelDatastore } from 'datastore-level'
import { ApiKeyStore, apiKeyControl } from './api-keys.js'
import { ApiKeyNotFoundError } from './errors.js'

describe('ApiKeyStore', () => {
  let dir: string

  before(async () => { dir = await mkdtemp(join(tmpdir(), 'llmesh-api-keys-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('verifies added keys by id, keeps them across restarts and forgets revoked ones', async () => {
    const datastore = new LevelDatastore(join(dir, 'datastore'))
    await datastore.open()
    const keys = await ApiKeyStore.open(datastore)
    const ci = await keys.add('ci')
    const laptop = await keys.add('laptop')
    assert.notEqual(ci.key, laptop.key)
    assert.equal(keys.verify(ci.key), ci.id)
    assert.equal(keys.verify(laptop.key), laptop.id)
    assert.equal(keys.verify(`${ci.key}x`), null)
    assert.equal(keys.verify(''), null)
    await keys.revoke(ci.id)
    assert.equal(keys.verify(ci.key), null)
    await assert.rejects(keys.revoke(ci.id), ApiKeyNotFoundError)
    await datastore.close()

    const reopened = new LevelDatastore(join(dir, 'datastore'))
    await reopened.open()
    const again = await ApiKeyStore.open(reopened)
    assert.equal(again.verify(laptop.key), laptop.id)
    assert.equal(again.verify(ci.key), null)
    assert.deepEqual(again.list(), [{ id: laptop.id, name: 'laptop', created: laptop.created }])
    await reopened.close()
  })

  it('lists the default key of `mesh init` first and refuses to revoke it', async () => {
    const datastore = new LevelDatastore(join(dir, 'datastore-control'))
    await datastore.open()
    const keys = await ApiKeyStore.open(datastore)
    const apiKeyFile = join(dir, 'api-key')
    assert.deepEqual(await apiKeyControl(keys, apiKeyFile, { op: 'key-list' }), [], 'a worker has no api-key file')
    await writeFile(apiKeyFile, 'secret\n')
    const added = await apiKeyControl(keys, apiKeyFile, { op: 'key-add', name: 'x' }) as { id: string }
    const listed = await apiKeyControl(keys, apiKeyFile, { op: 'key-list' }) as Array<{ id: string }>
    assert.deepEqual(listed.map(key => key.id), ['default', added.id])
    assert.ok(!JSON.stringify(listed).includes('secret'))
    await assert.rejects(apiKeyControl(keys, apiKeyFile, { op: 'key-revoke', id: 'default' }), /cannot be revoked/)
    await datastore.close()
  })
})
