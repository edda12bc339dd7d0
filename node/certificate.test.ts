import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { issueCertificate, parseCertificate, verifyCertificate, type CertificateBody, type TrustAnchor } from './certificate.js'
import { CertificateError } from './errors.js'

const ca = await generateKeyPair('Ed25519')
const otherCa = await generateKeyPair('Ed25519')
const now = Date.now()
const body: CertificateBody = { peerId: '12D3KooWpeer', role: 'worker', clusterId: 'c1', notBefore: now - 1000, notAfter: now + 60_000, serial: 7, features: 3, llamaCppTag: 'v0.4.0' }
const revoked = new Set<string>()
const trust: TrustAnchor = { caKey: ca.publicKey, clusterId: 'c1', isRevoked: (peerId) => revoked.has(peerId) }

async function reason (promise: Promise<void>): Promise<string> {
  const err = await promise.then(() => undefined, (e: unknown) => e)
  assert.ok(err instanceof CertificateError, `expected a CertificateError, got ${String(err)}`)
  return err.reason
}

describe('membership certificates', () => {
  it('verifies a certificate signed by the cluster CA, also after a JSON round trip', async () => {
    const cert = await issueCertificate(body, ca)
    await verifyCertificate(parseCertificate(JSON.parse(JSON.stringify(cert))), body.peerId, trust)
  })

  it('refuses a changed field, another CA, another peer, another cluster', async () => {
    const cert = await issueCertificate(body, ca)
    assert.equal(await reason(verifyCertificate({ ...cert, body: { ...body, role: 'coordinator' } }, body.peerId, trust)), 'signature')
    assert.equal(await reason(verifyCertificate(await issueCertificate(body, otherCa), body.peerId, trust)), 'signature')
    assert.equal(await reason(verifyCertificate(cert, '12D3KooWother', trust)), 'wrong-peer')
    assert.equal(await reason(verifyCertificate(cert, body.peerId, { ...trust, clusterId: 'c2' })), 'foreign-cluster')
  })

  it('refuses expired, not yet valid and revoked certificates', async () => {
    const cert = await issueCertificate(body, ca)
    assert.equal(await reason(verifyCertificate(cert, body.peerId, trust, now + 120_000)), 'expired')
    assert.equal(await reason(verifyCertificate(cert, body.peerId, trust, now - 120_000)), 'not-yet-valid')
    revoked.add(body.peerId)
    assert.equal(await reason(verifyCertificate(cert, body.peerId, trust)), 'revoked')
    revoked.clear()
  })

  it('rejects malformed certificates before any signature check', () => {
    assert.throws(() => parseCertificate({ body: { ...body, extra: 1 }, sig: 'x' }), CertificateError)
    assert.throws(() => parseCertificate({ body: { ...body, serial: '7' }, sig: 'x' }), CertificateError)
    assert.throws(() => parseCertificate('certificate'), CertificateError)
  })
})
