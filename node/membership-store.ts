import { Key } from 'interface-datastore'
import { parseCertificate, type Certificate, type Role } from './certificate.js'
import type { RevocationList } from './revocation-list.js'
import type { Datastore } from 'interface-datastore'

/** An invite as the coordinator stores it: never the secret, only its hash. */
export interface StoredInvite {
  secretHash: string
  role: Role
  expiresAt: number
  /** PeerId that redeemed it; set once, atomically with the check */
  usedBy?: string
}

const SELF_CERT = new Key('/llmesh/self/certificate')
const REVOCATIONS = new Key('/llmesh/revocations')
const SERIAL = new Key('/llmesh/ca/serial')
const memberKey = (peerId: string): Key => new Key(`/llmesh/members/${peerId}`)
const inviteKey = (id: string): Key => new Key(`/llmesh/invites/${id}`)

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Membership state kept in the node's level datastore. */
export class MembershipStore {
  private readonly store: Datastore
  // Serialises read-modify-write sequences (invite redemption, serial numbers).
  private queue: Promise<unknown> = Promise.resolve()

  constructor (store: Datastore) {
    this.store = store
  }

  private async getJson<T> (key: Key): Promise<T | undefined> {
    if (!await this.store.has(key)) return undefined
    return JSON.parse(decoder.decode(await this.store.get(key))) as T
  }

  private async putJson (key: Key, value: unknown): Promise<void> {
    await this.store.put(key, encoder.encode(JSON.stringify(value)))
  }

  private async exclusive<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn)
    this.queue = run.catch(() => {})
    return run
  }

  /** This node's own certificate, if it has joined. */
  async selfCertificate (): Promise<Certificate | undefined> {
    const value = await this.getJson<unknown>(SELF_CERT)
    return value === undefined ? undefined : parseCertificate(value)
  }

  /** Stores this node's own certificate. */
  async setSelfCertificate (cert: Certificate): Promise<void> {
    await this.putJson(SELF_CERT, cert)
  }

  /** Remembers a member's certificate (issued here or seen on the wire). */
  async putMember (cert: Certificate): Promise<void> {
    await this.putJson(memberKey(cert.body.peerId), cert)
  }

  /** Every member certificate this node knows. */
  async members (): Promise<Certificate[]> {
    const out: Certificate[] = []
    for await (const { value } of this.store.query({ prefix: '/llmesh/members/' })) {
      out.push(parseCertificate(JSON.parse(decoder.decode(value))))
    }
    return out
  }

  /** The latest CA-signed revocation list this node has seen. */
  async revocations (): Promise<RevocationList | undefined> {
    return this.getJson<RevocationList>(REVOCATIONS)
  }

  /** Stores a revocation list (the caller has verified it and checked it is newer). */
  async setRevocations (list: RevocationList): Promise<void> {
    await this.putJson(REVOCATIONS, list)
  }

  /** The next certificate serial number of this CA. */
  async nextSerial (): Promise<number> {
    return this.exclusive(async () => {
      const next = (await this.getJson<number>(SERIAL) ?? 0) + 1
      await this.putJson(SERIAL, next)
      return next
    })
  }

  /** Stores a new invite. */
  async putInvite (id: string, invite: StoredInvite): Promise<void> {
    await this.putJson(inviteKey(id), invite)
  }

  /**
   * Marks an invite used by `peerId` if `check` accepts it; check and mark happen as one
   * step, so two joiners racing with the same invite cannot both succeed.
   */
  async redeemInvite (id: string, peerId: string, check: (invite: StoredInvite | undefined) => void): Promise<StoredInvite> {
    return this.exclusive(async () => {
      const invite = await this.getJson<StoredInvite>(inviteKey(id))
      check(invite)
      const used = { ...invite as StoredInvite, usedBy: peerId }
      await this.putJson(inviteKey(id), used)
      return used
    })
  }
}
