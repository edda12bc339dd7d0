import { CertificateError } from './errors.js'
import { isSignedDocument, signDocument, verifyDocument, type SignedDocument } from './signed-document.js'
import type { PrivateKey, PublicKey } from '@libp2p/interface'

/** One revoked member. */
export interface Revocation {
  peerId: string
  serial: number
  /** ms since the epoch */
  revokedAt: number
}

/** The CA's list of revoked members; a higher version replaces a lower one. */
export interface RevocationListBody {
  clusterId: string
  version: number
  revoked: Revocation[]
}

/** A revocation list signed by the cluster CA. */
export type RevocationList = SignedDocument<RevocationListBody>

const DOMAIN = 'revocations/1'

/** Signs a revocation list with the CA key. */
export async function signRevocationList (body: RevocationListBody, caKey: PrivateKey): Promise<RevocationList> {
  return signDocument(DOMAIN, body, caKey)
}

/** Checks shape, cluster and CA signature of an untrusted revocation list. */
export async function verifyRevocationList (value: unknown, clusterId: string, caKey: PublicKey): Promise<RevocationList> {
  if (!isSignedDocument(value)) throw new CertificateError('the revocation list is not a signed document', 'schema')
  const b = value.body
  const ok = b.clusterId === clusterId && Number.isSafeInteger(b.version) && Array.isArray(b.revoked) &&
    b.revoked.every((r: unknown) => {
      const e = r as Record<string, unknown>
      return typeof e === 'object' && e !== null && typeof e.peerId === 'string' && Number.isSafeInteger(e.serial) && Number.isSafeInteger(e.revokedAt)
    })
  if (!ok) throw new CertificateError('the revocation list is malformed or belongs to another cluster', 'schema')
  await verifyDocument(DOMAIN, value, caKey)
  return value as unknown as RevocationList
}
