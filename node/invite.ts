import { createHash, randomBytes } from 'node:crypto'
import { publicKeyFromProtobuf } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { InviteError } from './errors.js'
import type { Role } from './certificate.js'

/** What an invite string carries. */
export interface Invite {
  clusterId: string
  /** base64 protobuf of the cluster CA public key */
  caPublicKey: string
  /** coordinator multiaddrs, each ending in /p2p/<coordinator PeerId> */
  addrs: string[]
  /** invite id: the key under which the coordinator stores the secret's hash */
  id: string
  /** base64url random secret; only its hash is stored by the coordinator */
  secret: string
  role: Role
  /** ms since the epoch */
  expiresAt: number
}

const PREFIX = 'llmesh1-'

/** Makes a fresh invite id and secret. */
export function newInviteSecret (): { id: string, secret: string } {
  return { id: randomBytes(9).toString('base64url'), secret: randomBytes(32).toString('base64url') }
}

/** The hash under which an invite secret is stored. */
export function hashInviteSecret (secret: string): string {
  return createHash('sha256').update(secret).digest('hex')
}

/** Encodes an invite as one copy-pasteable string. */
export function encodeInvite (invite: Invite): string {
  return PREFIX + Buffer.from(JSON.stringify(invite)).toString('base64url')
}

/** Decodes an invite string; throws InviteError when it is not one. */
export function decodeInvite (text: string): Invite {
  const trimmed = text.trim()
  if (!trimmed.startsWith(PREFIX)) throw new InviteError(`this is not an llmesh invite (it should start with "${PREFIX}"); copy the whole line that "mesh token" printed`, 'malformed')
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(trimmed.slice(PREFIX.length), 'base64url').toString('utf8'))
  } catch {
    throw new InviteError('the invite is damaged (not valid base64url JSON); copy the whole line that "mesh token" printed', 'malformed')
  }
  const v = value as Record<string, unknown>
  const ok = typeof v === 'object' && v !== null &&
    typeof v.clusterId === 'string' && typeof v.caPublicKey === 'string' &&
    Array.isArray(v.addrs) && v.addrs.length > 0 && v.addrs.every(a => typeof a === 'string') &&
    typeof v.id === 'string' && typeof v.secret === 'string' &&
    (v.role === 'worker' || v.role === 'coordinator') && Number.isSafeInteger(v.expiresAt)
  if (!ok) throw new InviteError('the invite is damaged (fields missing); copy the whole line that "mesh token" printed', 'malformed')
  try {
    publicKeyFromProtobuf(Buffer.from(v.caPublicKey as string, 'base64'))
    for (const addr of v.addrs as string[]) multiaddr(addr)
  } catch {
    throw new InviteError('the invite is damaged (bad CA key or address); copy the whole line that "mesh token" printed', 'malformed')
  }
  return v as unknown as Invite
}
