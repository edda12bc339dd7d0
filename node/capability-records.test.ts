import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { capabilityKey, capabilitySelectors, CAPABILITY_NAMESPACE, signCapabilityRecord, verifyCapabilityRecord, type CapabilityRecordBody } from './capability-records.js'
import { issueCertificate, type TrustAnchor } from './certificate.js'
import { CertificateError } from './errors.js'

const ca = await generateKeyPair('Ed25519')
const nodeKey = await generateKeyPair('Ed25519')
const peerId = peerIdFromPrivateKey(nodeKey).toString()
const now = Date.now()
const certificate = await issueCertificate({ peerId, role: 'worker', clusterId: 'c1', notBefore: now - 1000, notAfter: now + 60_000, serial: 2, features: 3, llamaCppTag: 'v1' }, ca)
const trust: TrustAnchor = { caKey: ca.publicKey, clusterId: 'c1', isRevoked: () => false }
const capabilities = { memoryBytes: 1 << 30, cpuCores: 2, gpu: null, llamaCppTag: 'v1', buildFlags: ['GGML_RPC=ON'], computeGflops: 1.5 }

function body (seq: number): CapabilityRecordBody {
  return { peerId, seq, capabilities, certificate }
}

describe('capability records', () => {
  it('validate when signed by the member they describe and carrying its certificate', async () => {
    const record = await verifyCapabilityRecord(capabilityKey(peerId), await signCapabilityRecord(body(1), nodeKey), trust)
    assert.deepEqual(record.body.capabilities, capabilities)
  })

  it('are refused when signed by another key, stored under another key, or tampered with', async () => {
    const other = await generateKeyPair('Ed25519')
    await assert.rejects(verifyCapabilityRecord(capabilityKey(peerId), await signCapabilityRecord(body(1), other), trust), CertificateError)
    await assert.rejects(verifyCapabilityRecord(capabilityKey(peerIdFromPrivateKey(other).toString()), await signCapabilityRecord(body(1), nodeKey), trust), CertificateError)
    const tampered = JSON.parse(new TextDecoder().decode(await signCapabilityRecord(body(1), nodeKey)))
    tampered.body.capabilities.memoryBytes *= 2
    await assert.rejects(verifyCapabilityRecord(capabilityKey(peerId), new TextEncoder().encode(JSON.stringify(tampered)), trust), CertificateError)
  })

  it('are refused once the member is revoked', async () => {
    await assert.rejects(verifyCapabilityRecord(capabilityKey(peerId), await signCapabilityRecord(body(1), nodeKey), { ...trust, isRevoked: () => true }), CertificateError)
  })

  it('select the record with the highest sequence number', async () => {
    const records = await Promise.all([3, 9, 5].map(async seq => signCapabilityRecord(body(seq), nodeKey)))
    assert.equal(await capabilitySelectors()[CAPABILITY_NAMESPACE](capabilityKey(peerId), records), 1)
  })
})
