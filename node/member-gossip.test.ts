import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { TopicValidatorResult, type GossipSub, type Message } from '@libp2p/gossipsub'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { LevelDatastore } from 'datastore-level'
import { issueCertificate, type Certificate } from './certificate.js'
import { FailureDetector } from './failure-detector.js'
import { LOCAL_FEATURES } from './features.js'
import { GOSSIP_MAX_SKEW_MS, HEARTBEAT_TOPIC, MemberGossip } from './member-gossip.js'
import { Membership } from './membership.js'
import { MembershipStore } from './membership-store.js'
import { NodeMetrics } from './metrics.js'
import type { PeerId, PrivateKey } from '@libp2p/interface'

const TAG = 'v-test'

describe('gossip validation', () => {
  let dir: string
  let datastore: LevelDatastore
  let gossip: MemberGossip
  let metrics: NodeMetrics
  let ca: PrivateKey
  let relay: PeerId
  let startedAt: number

  async function member (caKey: PrivateKey): Promise<{ peerId: PeerId, certificate: Certificate }> {
    const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const now = Date.now()
    const certificate = await issueCertificate({ peerId: peerId.toString(), role: 'worker', clusterId: 'c1', notBefore: now - 1000, notAfter: now + 60_000, serial: 5, features: LOCAL_FEATURES, llamaCppTag: TAG }, caKey)
    return { peerId, certificate }
  }

  function message (from: PeerId, envelope: unknown, type: 'signed' | 'unsigned' = 'signed'): Message {
    const data = new TextEncoder().encode(JSON.stringify(envelope))
    return (type === 'signed'
      ? { type, from, topic: HEARTBEAT_TOPIC, data, sequenceNumber: 1n, signature: new Uint8Array(64), key: from.publicKey }
      : { type, topic: HEARTBEAT_TOPIC, data }) as Message
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'llmesh-gossip-'))
    datastore = new LevelDatastore(join(dir, 'datastore'))
    await datastore.open()
    ca = await generateKeyPair('Ed25519')
    const self = await member(ca)
    metrics = new NodeMetrics()
    const membership = await Membership.load({
      peerId: self.peerId.toString(),
      config: { clusterId: 'c1', caPublicKey: Buffer.from(publicKeyToProtobuf(ca.publicKey)).toString('base64'), coordinatorAddrs: [] },
      caPublicKey: ca.publicKey,
      store: new MembershipStore(datastore),
      selfCertificate: self.certificate,
      build: { llamaCppTag: TAG, features: LOCAL_FEATURES },
      metrics
    })
    const relayMember = await member(ca)
    relay = relayMember.peerId
    await membership.accept(relay.toString(), { clusterId: 'c1', llamaCppTag: TAG, features: LOCAL_FEATURES, certificate: relayMember.certificate }, '127.0.0.1')
    // validate() never touches pubsub; the gossip layer only needs it to start.
    startedAt = Date.now()
    await new Promise(resolve => setTimeout(resolve, 5))
    gossip = new MemberGossip({ pubsub: undefined as unknown as GossipSub, membership, detector: new FailureDetector(), metrics, capabilities: { memoryBytes: 1, cpuCores: 1, gpu: null, llamaCppTag: TAG, buildFlags: [], computeGflops: 1 } })
  })
  after(async () => {
    await datastore.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('accepts a heartbeat signed by a member about itself, relayed by a member', async () => {
    const sender = await member(ca)
    assert.equal(await gossip.validate(relay, message(sender.peerId, { peerId: sender.peerId.toString(), certificate: sender.certificate, seq: Date.now(), kind: 'heartbeat' })), TopicValidatorResult.Accept)
  })

  it('refuses a heartbeat carrying another member\'s certificate, also one it verified for that member before', async () => {
    const owner = await member(ca)
    const borrower = await member(ca)
    assert.equal(await gossip.validate(relay, message(owner.peerId, { peerId: owner.peerId.toString(), certificate: owner.certificate, seq: Date.now(), kind: 'heartbeat' })), TopicValidatorResult.Accept)
    assert.equal(await gossip.validate(relay, message(borrower.peerId, { peerId: borrower.peerId.toString(), certificate: owner.certificate, seq: Date.now(), kind: 'heartbeat' })), TopicValidatorResult.Reject)
    assert.match(await metrics.text(), new RegExp(`llmesh_rejected_gossip_total\\{topic="${HEARTBEAT_TOPIC}",reason="wrong-peer"\\} 1`))
  })

  it('ignores a repeated, older or stale message from a member and accepts its next one', async () => {
    const sender = await member(ca)
    const heartbeat = (seq: number): Message => message(sender.peerId, { peerId: sender.peerId.toString(), certificate: sender.certificate, seq, kind: 'heartbeat' })
    const now = Date.now()
    assert.equal(await gossip.validate(relay, heartbeat(now)), TopicValidatorResult.Accept)
    assert.equal(await gossip.validate(relay, heartbeat(now)), TopicValidatorResult.Ignore)
    assert.equal(await gossip.validate(relay, heartbeat(now - 1)), TopicValidatorResult.Ignore)
    // Signed before this node started: nothing here remembers whether it was seen.
    assert.equal(await gossip.validate(relay, heartbeat(startedAt - 1)), TopicValidatorResult.Ignore)
    assert.equal(await gossip.validate(relay, heartbeat(now - GOSSIP_MAX_SKEW_MS - 1000)), TopicValidatorResult.Ignore)
    assert.equal(await gossip.validate(relay, heartbeat(now + 1)), TopicValidatorResult.Accept)
    const text = await metrics.text()
    assert.match(text, new RegExp(`llmesh_rejected_gossip_total\\{topic="${HEARTBEAT_TOPIC}",reason="replayed"\\} 2`))
    assert.match(text, new RegExp(`llmesh_rejected_gossip_total\\{topic="${HEARTBEAT_TOPIC}",reason="stale"\\} 2`))
  })

  it('drops and counts unsigned, spoofed, non-member and unauthenticated-relay messages', async () => {
    const sender = await member(ca)
    const other = await member(ca)
    const outsider = await member(await generateKeyPair('Ed25519'))
    const envelope = { peerId: sender.peerId.toString(), certificate: sender.certificate, seq: Date.now(), kind: 'heartbeat' }
    const cases: Array<[PeerId, Message]> = [
      [relay, message(sender.peerId, envelope, 'unsigned')],
      [relay, message(other.peerId, envelope)],
      [relay, message(outsider.peerId, { peerId: outsider.peerId.toString(), certificate: outsider.certificate, seq: Date.now(), kind: 'heartbeat' })],
      [outsider.peerId, message(sender.peerId, envelope)],
      [relay, message(sender.peerId, { peerId: sender.peerId.toString(), seq: Date.now(), kind: 'heartbeat' })]
    ]
    for (const [source, msg] of cases) assert.equal(await gossip.validate(source, msg), TopicValidatorResult.Reject)
    const text = await metrics.text()
    for (const reason of ['unsigned', 'spoofed-sender', 'not-a-member', 'unauthenticated-relay', 'malformed']) {
      assert.match(text, new RegExp(`llmesh_rejected_gossip_total\\{topic="${HEARTBEAT_TOPIC}",reason="${reason}"\\} 1`), reason)
    }
  })
})
