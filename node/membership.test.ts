import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { LevelDatastore } from 'datastore-level'
import { issueCertificate, verifyCertificate } from './certificate.js'
import { CertificateError, IncompatibleNodeError, InviteError } from './errors.js'
import { LOCAL_FEATURES } from './features.js'
import { decodeInvite } from './invite.js'
import { Membership } from './membership.js'
import { MembershipStore } from './membership-store.js'
import { NodeMetrics } from './metrics.js'
import { REDEMPTION_FAILURE_LIMIT } from './redemption-limiter.js'
import type { PrivateKey } from '@libp2p/interface'

const TAG = 'v-test'
const ADDRS = ['/ip4/127.0.0.1/tcp/1']

async function newPeerId (): Promise<string> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
}

describe('membership on the coordinator', () => {
  let dir: string
  let datastore: LevelDatastore
  let membership: Membership
  let caKey: PrivateKey
  const metrics = new NodeMetrics()

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'llmesh-membership-'))
    datastore = new LevelDatastore(join(dir, 'datastore'))
    await datastore.open()
    caKey = await generateKeyPair('Ed25519')
    const nodeKey = await generateKeyPair('Ed25519')
    const peerId = peerIdFromPrivateKey(nodeKey).toString()
    const config = { clusterId: 'c1', caPublicKey: Buffer.from(publicKeyToProtobuf(caKey.publicKey)).toString('base64'), coordinatorAddrs: [] }
    const now = Date.now()
    const selfCertificate = await issueCertificate({ peerId, role: 'coordinator', clusterId: 'c1', notBefore: now - 1000, notAfter: now + 3_600_000, serial: 1, features: LOCAL_FEATURES, llamaCppTag: TAG }, caKey)
    membership = await Membership.load({ peerId, config, caPublicKey: caKey.publicKey, store: new MembershipStore(datastore), selfCertificate, build: { llamaCppTag: TAG, features: LOCAL_FEATURES }, metrics, caKey })
  })
  after(async () => {
    await datastore.close()
    await rm(dir, { recursive: true, force: true })
  })

  async function redeem (invite: string, peerId: string): Promise<unknown> {
    const { id, secret } = decodeInvite(invite)
    return membership.accept(peerId, { clusterId: 'c1', llamaCppTag: TAG, features: LOCAL_FEATURES, invite: { id, secret } }, '127.0.0.1')
  }

  it('issues a CA-signed certificate for an invite, exactly once even when redeemed concurrently', async () => {
    const { invite } = await membership.createInvite('worker', 60_000, ADDRS)
    const peers = await Promise.all([newPeerId(), newPeerId(), newPeerId()])
    const results = await Promise.allSettled(peers.map(async p => redeem(invite, p)))
    const accepted = results.filter(r => r.status === 'fulfilled')
    assert.equal(accepted.length, 1)
    for (const r of results) {
      if (r.status === 'rejected') assert.ok(r.reason instanceof InviteError && r.reason.reason === 'used')
    }
    const winner = peers[results.findIndex(r => r.status === 'fulfilled')]
    const welcome = (accepted[0] as PromiseFulfilledResult<{ issued: Parameters<typeof verifyCertificate>[0] }>).value
    await verifyCertificate(welcome.issued, winner, membership.trust)
    assert.equal(welcome.issued.body.role, 'worker')
  })

  it('refuses an expired invite and an invite with a wrong secret', async () => {
    const { invite } = await membership.createInvite('worker', 1, ADDRS)
    await new Promise(resolve => setTimeout(resolve, 10))
    await assert.rejects(redeem(invite, await newPeerId()), (err: Error) => err instanceof InviteError && err.reason === 'expired')
    const fresh = decodeInvite((await membership.createInvite('worker', 60_000, ADDRS)).invite)
    await assert.rejects(membership.accept(await newPeerId(), { clusterId: 'c1', llamaCppTag: TAG, features: LOCAL_FEATURES, invite: { id: fresh.id, secret: 'guess' } }, '127.0.0.1'),
      (err: Error) => err instanceof InviteError && err.reason === 'unknown')
  })

  it('refuses invite guesses from one address unheard once they reach the limit, counts them and says so once', async () => {
    const warnings: Array<[string, number]> = []
    membership.on('redemption-failures', (source, failures) => warnings.push([source, failures]))
    const failures = async (reason: string): Promise<number> => Number(new RegExp(`llmesh_failed_invite_redemptions_total\\{reason="${reason}"\\} (\\d+)`).exec(await metrics.text())?.[1] ?? 0)
    const unknownBefore = await failures('unknown')
    const guess = async (source: string, invite: { id: string, secret: string }): Promise<unknown> =>
      membership.accept(await newPeerId(), { clusterId: 'c1', llamaCppTag: TAG, features: LOCAL_FEATURES, invite }, source)
    for (let i = 0; i < REDEMPTION_FAILURE_LIMIT; i++) {
      await assert.rejects(guess('10.0.0.9', { id: `guess${i}`, secret: 'guess' }), (err: Error) => err instanceof InviteError && err.reason === 'unknown')
    }
    // Now even a valid invite from that address is refused unheard (and stays unused) ...
    const valid = decodeInvite((await membership.createInvite('worker', 60_000, ADDRS)).invite)
    await assert.rejects(guess('10.0.0.9', valid), (err: Error) => err instanceof InviteError && err.reason === 'rate-limited')
    // ... while another address redeems it.
    assert.ok(((await guess('10.0.0.10', valid)) as { issued?: unknown }).issued !== undefined)
    assert.deepEqual(warnings, [['10.0.0.9', REDEMPTION_FAILURE_LIMIT]])
    assert.equal(await failures('unknown') - unknownBefore, REDEMPTION_FAILURE_LIMIT)
    assert.equal(await failures('rate-limited'), 1)
  })

  it('tells every waiter once a peer authenticates, and a waiter for another peer only at its timeout', async () => {
    const peerId = await newPeerId()
    const { invite } = await membership.createInvite('worker', 60_000, ADDRS)
    const { issued } = await redeem(invite, peerId) as { issued: Parameters<typeof verifyCertificate>[0] }
    const waiting = Array.from({ length: 20 }, async () => membership.waitAuthenticated(peerId, 5000))
    const other = membership.waitAuthenticated(await newPeerId(), 50)
    await membership.accept(peerId, { clusterId: 'c1', llamaCppTag: TAG, features: LOCAL_FEATURES, certificate: issued }, '127.0.0.1')
    assert.deepEqual(await Promise.all(waiting), Array(20).fill(true))
    assert.equal(await other, false)
  })

  it('refuses a hello without certificate or invite, and one from another cluster', async () => {
    await assert.rejects(membership.accept(await newPeerId(), { clusterId: 'c1', llamaCppTag: TAG, features: LOCAL_FEATURES }, '127.0.0.1'), (err: Error) => err instanceof CertificateError && err.reason === 'no-certificate')
    await assert.rejects(membership.accept(await newPeerId(), { clusterId: 'c2', llamaCppTag: TAG, features: LOCAL_FEATURES }, '127.0.0.1'), (err: Error) => err instanceof CertificateError && err.reason === 'foreign-cluster')
  })

  it('refuses a node with another llama.cpp build, naming both versions', async () => {
    await assert.rejects(membership.accept(await newPeerId(), { clusterId: 'c1', llamaCppTag: 'v-other', features: LOCAL_FEATURES }, '127.0.0.1'),
      (err: Error) => err instanceof IncompatibleNodeError && /runs llama.cpp v-other but node .* runs llama.cpp v-test/.test(err.message))
  })

  it('revokes a member: refused at the gater, its certificate no longer accepted, list persisted', async () => {
    const peerId = await newPeerId()
    const { invite } = await membership.createInvite('worker', 60_000, ADDRS)
    const { issued } = await redeem(invite, peerId) as { issued: Parameters<typeof verifyCertificate>[0] }
    const events: string[] = []
    membership.on('revoked', p => events.push(p))
    const list = await membership.revoke(peerId)
    assert.deepEqual(events, [peerId])
    assert.equal(membership.isRefused(peerId), true)
    await assert.rejects(membership.accept(peerId, { clusterId: 'c1', llamaCppTag: TAG, features: LOCAL_FEATURES, certificate: issued }, '127.0.0.1'), CertificateError)
    assert.deepEqual(await new MembershipStore(datastore).revocations(), list)
  })

  it('ignores a revocation list not signed by the cluster CA', async () => {
    const list = membership.revocations()
    assert.ok(list !== undefined)
    const forged = { ...list, body: { ...list.body, version: list.body.version + 1, revoked: [] } }
    await assert.rejects(membership.applyRevocations(forged), CertificateError)
  })
})
