import './polyfill.js'
import assert from 'node:assert/strict'
import { createServer, type Server, type Socket } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { startLoopbackPeer } from '../tools/tunnel-node.js'
import { waitFor } from '../tools/wait-for.js'
import {
  CAPABILITY_LOOKUP_MS, capabilityKey, capabilitySelectors, capabilityValidators, CAPABILITY_NAMESPACE, findCapabilityRecord,
  publishCapabilityRecord, signCapabilityRecord, verifyCapabilityRecord, type CapabilityRecordBody
} from './capability-records.js'
import { issueCertificate, type TrustAnchor } from './certificate.js'
import { CertificateError } from './errors.js'
import { NodeMetrics } from './metrics.js'
import { privateDht } from './private-dht.js'
import { SequenceHighWater } from './sequence-high-water.js'
import { LevelDatastore } from 'datastore-level'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Libp2p } from 'libp2p'

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

const dirs: string[] = []
after(async () => { for (const dir of dirs) await rm(dir, { recursive: true, force: true }) })

/** A datastore of its own in a temporary dir, as each node has. */
async function datastore (): Promise<LevelDatastore> {
  const dir = await mkdtemp(join(tmpdir(), 'llmesh-caps-'))
  dirs.push(dir)
  const store = new LevelDatastore(join(dir, 'datastore'))
  await store.open()
  return store
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

  it('are refused when older than one already accepted, also after a restart, and counted', async () => {
    const store = await datastore()
    const metrics = new NodeMetrics()
    const validate = capabilityValidators(trust, new SequenceHighWater(store, '/llmesh/seq/caps'), metrics)[CAPABILITY_NAMESPACE]
    const [older, newer] = await Promise.all([5, 9].map(async seq => signCapabilityRecord(body(seq), nodeKey)))
    await validate(capabilityKey(peerId), older)
    await validate(capabilityKey(peerId), newer)
    await validate(capabilityKey(peerId), newer)
    await assert.rejects(async () => { await validate(capabilityKey(peerId), older) }, (err: Error) => err instanceof CertificateError && err.reason === 'stale')
    // A fresh high-water mark on the same datastore: what a restarted node reads.
    const restarted = capabilityValidators(trust, new SequenceHighWater(store, '/llmesh/seq/caps'), metrics)[CAPABILITY_NAMESPACE]
    await assert.rejects(async () => { await restarted(capabilityKey(peerId), older) }, (err: Error) => err instanceof CertificateError && err.reason === 'stale')
    assert.match(await metrics.text(), /llmesh_rejected_dht_records_total\{reason="stale"\} 2/)
    await store.close()
  })

  it('select the record with the highest sequence number', async () => {
    const records = await Promise.all([3, 9, 5].map(async seq => signCapabilityRecord(body(seq), nodeKey)))
    assert.equal(await capabilitySelectors()[CAPABILITY_NAMESPACE](capabilityKey(peerId), records), 1)
  })
})

async function startDhtNode (): Promise<Libp2p<{ dht: KadDHT }>> {
  const validators = capabilityValidators(trust, new SequenceHighWater(await datastore(), '/llmesh/seq/caps'), new NodeMetrics())
  return await startLoopbackPeer({
    identify: identify(),
    ping: ping(),
    dht: privateDht({ validators, selectors: capabilitySelectors(), isMember: () => true })
  })
}

/** A listener that accepts connections on `port` and never answers: a peer whose dial hangs. */
async function silentListener (port: number): Promise<{ server: Server, sockets: Set<Socket> }> {
  const sockets = new Set<Socket>()
  const server = createServer(socket => { sockets.add(socket) })
  await new Promise<void>((resolve, reject) => { server.once('error', reject).listen(port, '127.0.0.1', resolve) })
  return { server, sockets }
}

describe('capability lookup in the private DHT', () => {
  const cleanups: Array<() => Promise<void>> = []
  after(async () => { for (const cleanup of cleanups.reverse()) await cleanup() })

  it('returns the record this node holds when a peer it asks never answers before the deadline', async () => {
    const holder = await startDhtNode()
    const peer = await startDhtNode()
    cleanups.push(async () => { await Promise.all([holder.stop(), peer.stop()]) })
    const peerAddress = peer.getMultiaddrs()[0]
    await holder.dial(peerAddress)
    const record = await signCapabilityRecord(body(1), nodeKey)
    // The put stores the record here and, once the peer is in the routing table, there too.
    await waitFor('the peer to accept the record', async () => await publishCapabilityRecord(holder.services.dht, peerId, record) > 0 ? true : undefined, 10_000)

    // The peer goes away and something else takes its port: dials to it now hang, as dials to
    // a stopped peer over QUIC do, instead of being refused at once.
    await peer.stop()
    await waitFor('the holder to see the peer leave', async () => holder.getConnections(peer.peerId).length === 0 ? true : undefined)
    const silent = await silentListener(Number(peerAddress.getComponents().find(component => component.name === 'tcp')?.value))
    cleanups.push(async () => {
      for (const socket of silent.sockets) socket.destroy()
      await new Promise(resolve => silent.server.close(resolve))
    })

    const found = await findCapabilityRecord(holder.services.dht, peerId, trust, AbortSignal.timeout(CAPABILITY_LOOKUP_MS))
    assert.deepEqual(found?.capabilities, capabilities)
    assert.ok(silent.sockets.size > 0, 'the lookup did not ask the silent peer, so the test proves nothing')
  })
})
