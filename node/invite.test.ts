import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { InviteError } from './errors.js'
import { decodeInvite, encodeInvite, type Invite } from './invite.js'

const ca = await generateKeyPair('Ed25519')
const invite: Invite = { clusterId: 'c1', caPublicKey: Buffer.from(publicKeyToProtobuf(ca.publicKey)).toString('base64'), addrs: ['/ip4/10.0.0.1/tcp/9090'], id: 'id1', secret: 's3cret', role: 'worker', expiresAt: 1_900_000_000_000 }

describe('invites', () => {
  it('round-trip as one copy-pasteable line', () => {
    const text = encodeInvite(invite)
    assert.match(text, /^llmesh1-[A-Za-z0-9_-]+$/)
    assert.deepEqual(decodeInvite(`  ${text}\n`), invite)
  })

  it('refuse text that is not an invite, or a damaged one, with InviteError', () => {
    assert.throws(() => decodeInvite('hello'), InviteError)
    assert.throws(() => decodeInvite('llmesh1-!!!'), InviteError)
    assert.throws(() => decodeInvite(encodeInvite(invite).slice(0, 40)), InviteError)
    assert.throws(() => decodeInvite(`llmesh1-${Buffer.from(JSON.stringify({ ...invite, addrs: [] })).toString('base64url')}`), InviteError)
    assert.throws(() => decodeInvite(`llmesh1-${Buffer.from(JSON.stringify({ ...invite, caPublicKey: 'AAAA' })).toString('base64url')}`), InviteError)
    assert.throws(() => decodeInvite(`llmesh1-${Buffer.from(JSON.stringify({ ...invite, addrs: ['nowhere'] })).toString('base64url')}`), InviteError)
  })
})
