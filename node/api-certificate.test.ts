import assert from 'node:assert/strict'
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { createServer, get, type Server } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { apiCaPaths, apiServerNames, createApiCa, issueApiServerCertificate, loadOrCreateApiCa, type ApiCa } from './api-certificate.js'
import { dataDir, type DataDir } from './data-dir.js'
import { DataDirError } from './errors.js'

/** GETs https://HOST:PORT/ trusting `ca` only; resolves with the body or rejects with the TLS error. */
async function getTrusting (host: string, port: number, ca: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    get({ host, port, path: '/', ca }, response => {
      let body = ''
      response.setEncoding('utf8').on('data', (chunk: string) => { body += chunk }).on('end', () => { resolve(body) })
    }).on('error', reject)
  })
}

describe('the API\'s X.509 CA and server certificate', () => {
  let root: string
  let dir: DataDir
  let ca: ApiCa
  let server: Server
  let port: number

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'llmesh-api-ca-'))
    dir = dataDir(root)
    await writeFile(dir.caKey, 'the cluster CA (only its presence matters here)', { mode: 0o600 })
    ca = await loadOrCreateApiCa(dir, 'llmesh-test')
    const served = await issueApiServerCertificate(ca, apiServerNames('127.0.0.1'))
    server = createServer(served, (_request, response) => { response.end('hello over TLS') })
    await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
    port = (server.address() as { port: number }).port
  })
  after(async () => {
    server?.close()
    await rm(root, { recursive: true, force: true })
  })

  it('keeps the CA key 0600 and the CA certificate readable, and returns the same CA the next time', async () => {
    assert.equal((await stat(apiCaPaths(dir).key)).mode & 0o777, 0o600)
    assert.equal((await stat(apiCaPaths(dir).cert)).mode & 0o777, 0o644)
    assert.deepEqual(await loadOrCreateApiCa(dir, 'llmesh-test'), ca)
    const cert = new X509Certificate(ca.certPem)
    assert.equal(cert.ca, true)
    assert.match(cert.subject, /llmesh API CA llmesh-test/)
  })

  it('serves a certificate that a client trusting the CA accepts, for 127.0.0.1 and localhost', async () => {
    assert.equal(await getTrusting('127.0.0.1', port, ca.certPem), 'hello over TLS')
    assert.equal(await getTrusting('localhost', port, ca.certPem), 'hello over TLS')
  })

  it('is refused by a client that trusts another cluster\'s CA, or only the public CAs', async () => {
    const otherRoot = await mkdtemp(join(tmpdir(), 'llmesh-api-ca-'))
    try {
      const other = await createApiCa(dataDir(otherRoot), 'llmesh-other')
      await assert.rejects(getTrusting('127.0.0.1', port, other.certPem), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' })
    } finally {
      await rm(otherRoot, { recursive: true, force: true })
    }
    await assert.rejects(fetch(`https://127.0.0.1:${port}/`), (err: Error) => /UNABLE_TO_VERIFY_LEAF_SIGNATURE/.test(String((err.cause as { code?: string } | undefined)?.code)))
  })

  it('names every address of the machine when the API listens on all of them', () => {
    const names = apiServerNames('0.0.0.0')
    assert.ok(names.includes('127.0.0.1') && names.includes('localhost'))
    assert.ok(apiServerNames('10.1.2.3').includes('10.1.2.3'))
  })

  it('is made only where the cluster CA is: on the coordinator', async () => {
    const workerRoot = await mkdtemp(join(tmpdir(), 'llmesh-api-ca-'))
    try {
      await assert.rejects(loadOrCreateApiCa(dataDir(workerRoot), 'llmesh-test'), DataDirError)
    } finally {
      await rm(workerRoot, { recursive: true, force: true })
    }
  })
})
