// The throwaway TLS identity of one side of the tunnel's data channel: a key made when the
// tunnel service starts, held in memory only, and a self-signed certificate for it. Neither
// side trusts it through a CA: each learns the other's certificate fingerprint over an
// authenticated libp2p stream and pins it (data-channel.ts).
import 'reflect-metadata'
import { randomBytes, webcrypto, X509Certificate } from 'node:crypto'
import * as x509 from '@peculiar/x509'

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' }
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' }
// Outlives any process that holds it; the key dies with the process.
const LIFETIME_MS = 10 * 365 * 24 * 3600 * 1000

/** A TLS key and certificate (PEM), with the certificate's fingerprint that the far side pins. */
export interface ChannelIdentity {
  key: string
  cert: string
  /** SHA-256 of the certificate (DER), lower-case hex */
  sha256: string
}

/** The form fingerprints are exchanged and compared in: lower-case hex without separators. */
export function certificateSha256 (cert: X509Certificate): string {
  return cert.fingerprint256.replaceAll(':', '').toLowerCase()
}

/** True for a fingerprint in the exchanged form. */
export function isCertificateSha256 (value: unknown): value is string {
  return typeof value === 'string' && /^[0-9a-f]{64}$/.test(value)
}

/** Makes a new key and a self-signed certificate for it. */
export async function createChannelIdentity (): Promise<ChannelIdentity> {
  // Node's own webcrypto named in every call: @libp2p/tls points x509's shared provider at another implementation.
  const keys = await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])
  const now = Date.now()
  const serial = randomBytes(16)
  serial[0] &= 0x7f
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString('hex'),
    name: 'CN=llmesh tunnel data channel',
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + LIFETIME_MS),
    signingAlgorithm: SIGNING_ALGORITHM,
    keys
  }, webcrypto)
  const certPem = cert.toString('pem') + '\n'
  const key = x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY') + '\n'
  return { key, cert: certPem, sha256: certificateSha256(new X509Certificate(certPem)) }
}
