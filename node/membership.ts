import { EventEmitter } from 'node:events'
import { timingSafeEqual } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { issueCertificate, verifyCertificate, type Certificate, type Role, type TrustAnchor } from './certificate.js'
import { checkCompatible, type BuildFacts } from './compatibility.js'
import { AuthRefusedError, CertificateError, InviteError } from './errors.js'
import { encodeInvite, hashInviteSecret, newInviteSecret } from './invite.js'
import { RedemptionLimiter } from './redemption-limiter.js'
import { signRevocationList, verifyRevocationList, type RevocationList } from './revocation-list.js'
import type { ClusterConfig } from './data-dir.js'
import type { MembershipStore } from './membership-store.js'
import type { NodeMetrics } from './metrics.js'
import type { Hello, Welcome } from '../protocols/auth/messages.js'
import type { AuthAuthority } from '../protocols/auth/auth-handshake.js'
import type { Connection, PrivateKey, PublicKey } from '@libp2p/interface'

/** Events of the membership layer. */
export interface MembershipEvents {
  /** a peer completed the auth handshake with a valid certificate */
  authenticated: [peerId: string, certificate: Certificate]
  /** the CA revoked a member */
  revoked: [peerId: string]
  /** (coordinator) `source` failed as many invite redemptions in a row as the limiter allows */
  'redemption-failures': [source: string, failures: number]
}

/** What a Membership is built from. */
export interface MembershipInit {
  peerId: string
  config: ClusterConfig
  caPublicKey: PublicKey
  store: MembershipStore
  selfCertificate: Certificate
  build: BuildFacts
  metrics: NodeMetrics
  /** the CA key: present on the coordinator only */
  caKey?: PrivateKey
  /** validity of issued certificates (default one year) */
  certificateTtlMs?: number
}

const YEAR_MS = 365 * 24 * 3600 * 1000
// Peers that failed the handshake with a bad or missing certificate are refused at the
// gater for this long, so they cannot keep the node busy with handshakes.
const REFUSAL_MS = 60_000
// Lets a REFUSED message reach the peer before its connection is closed.
const CLOSE_AFTER_REFUSAL_MS = 200

/**
 * Handshake failures that show the peer is no member of this cluster: a bad certificate, a
 * refusal of ours, no llmesh auth protocol at all. Such a peer is refused at the gater for a
 * while, whichever side dialled. A timeout may be load, not a stranger: from a member it only
 * disconnects.
 */
function showsNonMember (err: Error): boolean {
  return err instanceof CertificateError || err instanceof AuthRefusedError || err.name === 'UnsupportedProtocolError'
}

function refusalReason (err: Error): string {
  if (err instanceof CertificateError || err instanceof InviteError) return err.reason
  if (err instanceof AuthRefusedError) return 'refused-by-peer'
  if (err.name === 'UnsupportedProtocolError') return 'no-auth-protocol'
  return err.name
}

/**
 * The "mTLS-style" identity layer at runtime: who is authenticated, who is revoked, and
 * (on the coordinator) issuing certificates for invites.
 */
export class Membership extends EventEmitter<MembershipEvents> implements AuthAuthority {
  readonly peerId: string
  readonly trust: TrustAnchor
  readonly selfCertificate: Certificate
  private readonly init: MembershipInit
  private readonly authenticated = new Map<string, Certificate>()
  private readonly refusedUntil = new Map<string, number>()
  private readonly revoked = new Set<string>()
  private readonly stored = new Set<string>()
  /** PeerId -> notAfter of every member whose verified certificate this node holds */
  private readonly members = new Map<string, number>()
  private readonly redemptions = new RedemptionLimiter()
  private readonly waiters = new Map<string, Set<() => void>>()
  private revocationList: RevocationList | undefined

  private constructor (init: MembershipInit) {
    super()
    this.init = init
    this.peerId = init.peerId
    this.selfCertificate = init.selfCertificate
    this.trust = { caKey: init.caPublicKey, clusterId: init.config.clusterId, isRevoked: (peerId) => this.revoked.has(peerId) }
  }

  /** Loads the persisted revocation list and returns the membership layer. */
  static async load (init: MembershipInit): Promise<Membership> {
    const membership = new Membership(init)
    const list = await init.store.revocations()
    if (list !== undefined) await membership.applyRevocations(list)
    for (const cert of await init.store.members()) membership.members.set(cert.body.peerId, cert.body.notAfter)
    return membership
  }

  /** True for the coordinator, which holds the CA key. */
  get isCoordinator (): boolean {
    return this.init.caKey !== undefined
  }

  /** The HELLO this node sends on every connection it dials. */
  hello (): Hello {
    return { clusterId: this.trust.clusterId, llamaCppTag: this.init.build.llamaCppTag, features: this.init.build.features, certificate: this.selfCertificate }
  }

  /** True when `peerId` completed the handshake on a live connection. */
  isAuthenticated (peerId: string): boolean {
    return this.authenticated.has(peerId)
  }

  /** The certificate a peer authenticated with. */
  certificateOf (peerId: string): Certificate | undefined {
    return this.authenticated.get(peerId)
  }

  /**
   * Resolves true once `peerId` is authenticated, false after `timeoutMs`. Waiters are kept
   * per peer, not as event listeners: each connection still authenticating has one per gated
   * stream and per DHT and gossipsub protocol, more than an EventEmitter's warning threshold.
   */
  async waitAuthenticated (peerId: string, timeoutMs: number): Promise<boolean> {
    if (this.isAuthenticated(peerId)) return true
    return new Promise(resolve => {
      const waiters = this.waiters.get(peerId) ?? new Set<() => void>()
      this.waiters.set(peerId, waiters)
      const onAuthenticated = (): void => {
        clearTimeout(timer)
        resolve(true)
      }
      const timer = setTimeout(() => {
        waiters.delete(onAuthenticated)
        if (waiters.size === 0 && this.waiters.get(peerId) === waiters) this.waiters.delete(peerId)
        resolve(false)
      }, timeoutMs)
      waiters.add(onAuthenticated)
    })
  }

  /** Forgets a peer's authentication when its last connection closed. */
  forget (peerId: string): void {
    this.authenticated.delete(peerId)
  }

  /**
   * True when this node holds a verified, unexpired, unrevoked certificate of `peerId`: the
   * only peers the DHT keeps in its routing table, names to others or dials.
   */
  isMember (peerId: string): boolean {
    const notAfter = this.members.get(peerId)
    return notAfter !== undefined && Date.now() <= notAfter && !this.revoked.has(peerId)
  }

  /** True when the gater must refuse `peerId`: revoked, or recently failed the handshake. */
  isRefused (peerId: string): boolean {
    if (this.revoked.has(peerId)) return true
    const until = this.refusedUntil.get(peerId)
    if (until === undefined) return false
    if (Date.now() < until) return true
    this.refusedUntil.delete(peerId)
    return false
  }

  /** True when the CA revoked `peerId`. */
  isRevoked (peerId: string): boolean {
    return this.revoked.has(peerId)
  }

  private markAuthenticated (peerId: string, cert: Certificate): void {
    this.authenticated.set(peerId, cert)
    const waiters = this.waiters.get(peerId)
    this.waiters.delete(peerId)
    for (const waiter of waiters ?? []) waiter()
    this.emit('authenticated', peerId, cert)
  }

  /** Listener side of the handshake: admits a member or a joiner with an invite. */
  async accept (peerId: string, hello: Hello, source: string): Promise<Welcome> {
    if (hello.clusterId !== this.trust.clusterId) {
      throw new CertificateError(`this node belongs to cluster ${this.trust.clusterId}, not to cluster ${hello.clusterId}`, 'foreign-cluster')
    }
    // Said from both sides, as the refusal is shown to the dialer.
    checkCompatible(this.init.build, hello, `node ${peerId}`, `node ${this.peerId}`)
    if (this.revoked.has(peerId)) throw new CertificateError(`peer ${peerId} has been revoked from this cluster`, 'revoked')
    let issued: Certificate | undefined
    if (hello.certificate !== undefined) {
      await verifyCertificate(hello.certificate, peerId, this.trust)
      await this.learn(hello.certificate)
      this.markAuthenticated(peerId, hello.certificate)
    } else if (hello.invite !== undefined) {
      // A joiner only fetches its certificate and hangs up; it authenticates again
      // with that certificate when it starts, so it does not count as a live member yet.
      issued = await this.redeemInvite(peerId, hello, source)
    } else {
      throw new CertificateError('no certificate was presented; join the cluster with "mesh join <invite>" first', 'no-certificate')
    }
    return { llamaCppTag: this.init.build.llamaCppTag, features: this.init.build.features, certificate: this.selfCertificate, issued, revocations: this.revocationList }
  }

  /**
   * Counts a refused or failed handshake, inbound or outbound, refuses a peer that showed it is
   * no member at the gater for a while (no re-dial, no accepted connection), and disconnects.
   * A peer this node dialled and holds no certificate of is refused whatever the failure: each
   * dial sends it this node's certificate, so a stranger named as a static peer that just lets
   * the handshake time out is not dialled again and again.
   */
  refused (connection: Connection, err: Error): void {
    const peer = connection.remotePeer.toString()
    this.init.metrics.refusedPeer(refusalReason(err))
    if (showsNonMember(err) || (connection.direction === 'outbound' && !this.isMember(peer))) this.refusedUntil.set(peer, Date.now() + REFUSAL_MS)
    setTimeout(() => { connection.abort(err) }, CLOSE_AFTER_REFUSAL_MS).unref()
  }

  /** Dialer side: checks the listener's WELCOME and marks the listener authenticated. */
  async admitWelcome (peerId: string, welcome: Welcome): Promise<void> {
    checkCompatible(this.init.build, welcome, `node ${peerId}`)
    if (welcome.revocations != null) await this.applyRevocations(welcome.revocations)
    await verifyCertificate(welcome.certificate, peerId, this.trust)
    await this.learn(welcome.certificate)
    this.markAuthenticated(peerId, welcome.certificate)
  }

  /** Stores a verified member certificate so the node knows the member after a restart. */
  async learn (cert: Certificate): Promise<void> {
    if (cert.body.peerId === this.peerId) return
    this.members.set(cert.body.peerId, Math.max(cert.body.notAfter, this.members.get(cert.body.peerId) ?? 0))
    // Heartbeats carry the certificate every second; write each one once.
    if (this.stored.has(cert.sig)) return
    await this.init.store.putMember(cert)
    this.stored.add(cert.sig)
  }

  /** Every member certificate this node knows, itself excluded. */
  async knownMembers (): Promise<Certificate[]> {
    return this.init.store.members()
  }

  private requireCa (): PrivateKey {
    if (this.init.caKey === undefined) throw new InviteError('only the coordinator (which holds the cluster CA) can do this; run the command on the coordinator', 'not-coordinator')
    return this.init.caKey
  }

  /** Coordinator: creates a single-use invite for `role`, valid for `ttlMs`, naming `addrs`. */
  async createInvite (role: Role, ttlMs: number, addrs: string[]): Promise<{ invite: string, expiresAt: number }> {
    this.requireCa()
    const { id, secret } = newInviteSecret()
    const expiresAt = Date.now() + ttlMs
    await this.init.store.putInvite(id, { secretHash: hashInviteSecret(secret), role, expiresAt })
    const invite = encodeInvite({ clusterId: this.trust.clusterId, caPublicKey: this.init.config.caPublicKey, addrs, id, secret, role, expiresAt })
    return { invite, expiresAt }
  }

  // `source` is the joiner's host: a guesser can make new PeerIds at will, not new addresses.
  private async redeemInvite (peerId: string, hello: Hello, source: string): Promise<Certificate> {
    const caKey = this.requireCa()
    if (this.redemptions.blocked(source)) {
      this.init.metrics.failedRedemption('rate-limited')
      throw new InviteError('too many failed invite redemptions from this address; wait a minute, then use a fresh invite from "mesh token"', 'rate-limited')
    }
    const { id, secret } = hello.invite as { id: string, secret: string }
    const hash = Buffer.from(hashInviteSecret(secret), 'hex')
    let invite
    try {
      invite = await this.init.store.redeemInvite(id, peerId, stored => {
        if (stored === undefined || !timingSafeEqual(Buffer.from(stored.secretHash, 'hex'), hash)) {
          throw new InviteError('the invite is not known to this coordinator; ask for a new one with "mesh token"', 'unknown')
        }
        if (stored.usedBy !== undefined) throw new InviteError('the invite has already been used; invites are single-use, ask for a new one with "mesh token"', 'used')
        if (Date.now() > stored.expiresAt) throw new InviteError(`the invite expired at ${new Date(stored.expiresAt).toISOString()}; ask for a new one with "mesh token"`, 'expired')
      })
    } catch (err) {
      if (err instanceof InviteError) {
        this.init.metrics.failedRedemption(err.reason)
        const failures = this.redemptions.failed(source)
        if (this.redemptions.reachedLimit(failures)) this.emit('redemption-failures', source, failures)
      }
      throw err
    }
    const now = Date.now()
    const cert = await issueCertificate({
      peerId,
      role: invite.role,
      clusterId: this.trust.clusterId,
      notBefore: now - 60_000,
      notAfter: now + (this.init.certificateTtlMs ?? YEAR_MS),
      serial: await this.init.store.nextSerial(),
      features: hello.features,
      llamaCppTag: hello.llamaCppTag
    }, caKey)
    await this.learn(cert)
    return cert
  }

  /** Coordinator: revokes a member and returns the new signed list to gossip. */
  async revoke (peerId: string): Promise<RevocationList> {
    const caKey = this.requireCa()
    try {
      peerIdFromString(peerId)
    } catch {
      throw new InviteError(`"${peerId}" is not a PeerId; copy it from "mesh status"`, 'malformed')
    }
    if (peerId === this.peerId) throw new InviteError('the coordinator cannot revoke itself', 'self')
    const members = await this.knownMembers()
    const serial = members.find(c => c.body.peerId === peerId)?.body.serial ?? 0
    const previous = this.revocationList?.body
    const revoked = (previous?.revoked ?? []).filter(r => r.peerId !== peerId)
    revoked.push({ peerId, serial, revokedAt: Date.now() })
    const list = await signRevocationList({ clusterId: this.trust.clusterId, version: (previous?.version ?? 0) + 1, revoked }, caKey)
    await this.applyRevocations(list)
    return list
  }

  /** The latest revocation list. */
  revocations (): RevocationList | undefined {
    return this.revocationList
  }

  /** Verifies a CA-signed revocation list; if newer, persists it and emits 'revoked' per new entry. */
  async applyRevocations (value: unknown): Promise<void> {
    const list = await verifyRevocationList(value, this.trust.clusterId, this.trust.caKey)
    if (this.revocationList !== undefined && list.body.version <= this.revocationList.body.version) return
    this.revocationList = list
    await this.init.store.setRevocations(list)
    for (const { peerId } of list.body.revoked) {
      if (this.revoked.has(peerId)) continue
      this.revoked.add(peerId)
      this.authenticated.delete(peerId)
      this.emit('revoked', peerId)
    }
  }
}
