import { canonicalJson } from './canonical-json.js'
import { CertificateError } from './errors.js'
import type { PrivateKey, PublicKey } from '@libp2p/interface'

/** A JSON body and an Ed25519 signature over its canonical encoding. */
export interface SignedDocument<T> {
  body: T
  /** base64 signature */
  sig: string
}

const encoder = new TextEncoder()

// The domain separates document kinds, so a signature on one kind never validates another.
function signedBytes (domain: string, body: unknown): Uint8Array {
  return encoder.encode(`llmesh/${domain}\n${canonicalJson(body)}`)
}

/** Signs `body` for the given document kind. */
export async function signDocument<T> (domain: string, body: T, key: PrivateKey): Promise<SignedDocument<T>> {
  const sig = await key.sign(signedBytes(domain, body))
  return { body, sig: Buffer.from(sig).toString('base64') }
}

/** Throws CertificateError unless `doc.sig` is `key`'s signature over `doc.body`. */
export async function verifyDocument (domain: string, doc: SignedDocument<unknown>, key: PublicKey): Promise<void> {
  const sig = Buffer.from(doc.sig, 'base64')
  if (sig.byteLength !== 64 || !await key.verify(signedBytes(domain, doc.body), sig)) {
    throw new CertificateError(`the ${domain} signature does not verify against its signer's key`, 'signature')
  }
}

/** Checks the outer shape {body: object, sig: string} of an untrusted signed document. */
export function isSignedDocument (value: unknown): value is SignedDocument<Record<string, unknown>> {
  if (typeof value !== 'object' || value === null) return false
  const doc = value as Record<string, unknown>
  return typeof doc.sig === 'string' && doc.sig.length <= 200 && typeof doc.body === 'object' && doc.body !== null && !Array.isArray(doc.body)
}
