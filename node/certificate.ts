import { CertificateError } from './errors.js'
import { isSignedDocument, signDocument, verifyDocument, type SignedDocument } from './signed-document.js'
import type { PrivateKey, PublicKey } from '@libp2p/interface'

/** What a member does in the cluster. */
export type Role = 'coordinator' | 'worker'

/** Feature bits a node supports; a cluster refuses members lacking a required one. */
export const Feature = {
  /** tunnels ggml-rpc over /llmesh/rpc */
  rpcTunnel: 1 << 0,
  /** publishes capability records */
  capabilities: 1 << 1
} as const

/** Features every member of a cluster must support. */
export const REQUIRED_FEATURES = Feature.rpcTunnel | Feature.capabilities

/** The signed fields of a membership certificate. */
export interface CertificateBody {
  peerId: string
  role: Role
  clusterId: string
  /** ms since the epoch */
  notBefore: number
  /** ms since the epoch */
  notAfter: number
  serial: number
  features: number
  llamaCppTag: string
}

/** A membership certificate: its body signed by the cluster CA. */
export type Certificate = SignedDocument<CertificateBody>

const DOMAIN = 'certificate/1'

/** Signs a certificate body with the cluster CA key. */
export async function issueCertificate (body: CertificateBody, caKey: PrivateKey): Promise<Certificate> {
  return signDocument(DOMAIN, body, caKey)
}

/** Checks the shape of an untrusted certificate and returns it typed; throws CertificateError. */
export function parseCertificate (value: unknown): Certificate {
  if (!isSignedDocument(value)) throw new CertificateError('the certificate is not a signed document', 'schema')
  const b = value.body
  const ok = typeof b.peerId === 'string' && b.peerId.length < 100 &&
    (b.role === 'coordinator' || b.role === 'worker') &&
    typeof b.clusterId === 'string' && b.clusterId.length < 100 &&
    Number.isSafeInteger(b.notBefore) && Number.isSafeInteger(b.notAfter) &&
    Number.isSafeInteger(b.serial) && Number.isSafeInteger(b.features) &&
    typeof b.llamaCppTag === 'string' && b.llamaCppTag.length < 100 &&
    Object.keys(b).length === 8
  if (!ok) throw new CertificateError('the certificate has missing, extra or malformed fields', 'schema')
  return value as unknown as Certificate
}

/** What a certificate is checked against. */
export interface TrustAnchor {
  caKey: PublicKey
  clusterId: string
  /** serials revoked by the CA */
  isRevoked: (peerId: string, serial: number) => boolean
}

/**
 * Throws CertificateError unless `cert` is signed by the cluster CA, belongs to this
 * cluster and to `peerId`, is within its validity period and is not revoked.
 */
export async function verifyCertificate (cert: Certificate, peerId: string, trust: TrustAnchor, now = Date.now()): Promise<void> {
  const b = cert.body
  if (b.clusterId !== trust.clusterId) throw new CertificateError(`the certificate belongs to cluster ${b.clusterId}, not to this cluster (${trust.clusterId})`, 'foreign-cluster')
  if (b.peerId !== peerId) throw new CertificateError(`the certificate names peer ${b.peerId} but was presented by ${peerId}`, 'wrong-peer')
  await verifyDocument(DOMAIN, cert, trust.caKey)
  if (now < b.notBefore) throw new CertificateError(`the certificate of ${peerId} is not valid before ${new Date(b.notBefore).toISOString()}; check the clocks`, 'not-yet-valid')
  if (now > b.notAfter) throw new CertificateError(`the certificate of ${peerId} expired at ${new Date(b.notAfter).toISOString()}; join the cluster again with a new invite`, 'expired')
  if (trust.isRevoked(b.peerId, b.serial)) throw new CertificateError(`peer ${peerId} has been revoked from this cluster`, 'revoked')
}
