import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createCluster } from '../node/create-cluster.js'
import { dataDir, type DataDir } from '../node/data-dir.js'
import { apiTls } from './api-tls.js'
import type { Log } from '../node/log.js'

describe('mesh start\'s API TLS flags', () => {
  let root: string
  let dir: DataDir
  const warnings: string[] = []
  const log: Log = (level, message) => { if (level === 'warn') warnings.push(message) }

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'llmesh-api-tls-'))
    dir = dataDir(root)
    await createCluster(dir, false)
  })
  after(async () => { await rm(root, { recursive: true, force: true }) })

  it('warns that API keys would cross the network in clear text on a LAN address without TLS, not on loopback', async () => {
    warnings.length = 0
    assert.equal(await apiTls({ apiHost: '127.0.0.1' }, dir, log), undefined)
    assert.deepEqual(warnings, [])
    assert.equal(await apiTls({ apiHost: '0.0.0.0' }, dir, log), undefined)
    assert.equal(warnings.length, 1)
    assert.match(warnings[0], /without TLS: API keys .* clear text; pass --tls auto/)
  })

  it('--tls auto issues a certificate for the API address from the cluster\'s CA, without a warning', async () => {
    warnings.length = 0
    const tls = await apiTls({ apiHost: '10.9.8.7', tls: 'auto' }, dir, log)
    assert.ok(tls !== undefined)
    const cert = new X509Certificate(tls.cert)
    assert.equal(cert.checkIP('10.9.8.7'), '10.9.8.7')
    assert.ok(cert.checkIssued(new X509Certificate(await readFile(join(root, 'api-ca.pem')))))
    assert.deepEqual(warnings, [])
  })

  it('--tls-cert and --tls-key serve the given files', async () => {
    await writeFile(join(root, 'cert.pem'), 'CERT')
    await writeFile(join(root, 'key.pem'), 'KEY')
    assert.deepEqual(await apiTls({ apiHost: '0.0.0.0', tlsCert: join(root, 'cert.pem'), tlsKey: join(root, 'key.pem') }, dir, log), { cert: 'CERT', key: 'KEY' })
  })
})
