// The API's X.509 certificates. The cluster CA that signs members' certificates is an Ed25519
// key in llmesh's own format, which no HTTPS client understands; HTTPS clients get a separate
// X.509 CA (ECDSA P-256, kept beside it on the coordinator), whose certificate `mesh ca-cert`
// prints for them to trust, and which signs the coordinator's API certificate at each start.
import 'reflect-metadata'
import { randomBytes, webcrypto } from 'node:crypto'
import { chmod, readFile, writeFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { hostname, networkInterfaces } from 'node:os'
import { join } from 'node:path'
import * as x509 from '@peculiar/x509'
import { exists, writeSecretFile, type DataDir } from './data-dir.js'
import { DataDirError } from './errors.js'

// Every call below names Node's own webcrypto, whose keys these are: @libp2p/tls sets x509's
// shared provider to another implementation when it loads, and which module loaded last
// depends on the process (a bench that loads the local engine first failed with "Key is not
// of type 'CryptoKey'").

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' }
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' }
const DAY_MS = 24 * 3600 * 1000
const CA_LIFETIME_MS = 10 * 365 * DAY_MS
// Re-issued at every start; clients trust the CA, not this certificate. 397 days is the most browsers accept.
const SERVER_LIFETIME_MS = 397 * DAY_MS

/** Where the API's CA lives in a coordinator's data dir. */
export function apiCaPaths (dir: DataDir): { key: string, cert: string } {
  return { key: join(dir.root, 'api-ca.key'), cert: join(dir.root, 'api-ca.pem') }
}

/** The API's CA: its certificate (PEM, public) and private key (PKCS#8 PEM, 0600). */
export interface ApiCa {
  certPem: string
  keyPem: string
}

function serialNumber (): string {
  // Positive (top bit clear) and unique enough that no two certificates of a cluster share one.
  const bytes = randomBytes(16)
  bytes[0] &= 0x7f
  return bytes.toString('hex')
}

/** Creates (or replaces) the API's CA for `clusterId` in `dir`. */
export async function createApiCa (dir: DataDir, clusterId: string): Promise<ApiCa> {
  const keys = await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])
  const now = Date.now()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=llmesh API CA ${clusterId}, O=llmesh`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + CA_LIFETIME_MS),
    signingAlgorithm: SIGNING_ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto)
    ]
  }, webcrypto)
  const keyPem = x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY')
  const ca = { certPem: cert.toString('pem') + '\n', keyPem: keyPem + '\n' }
  const paths = apiCaPaths(dir)
  await writeSecretFile(paths.key, ca.keyPem)
  await writeFile(paths.cert, ca.certPem, { mode: 0o644 })
  // Readable by every user whatever the umask: it is public, and clients are given it.
  await chmod(paths.cert, 0o644)
  return ca
}

/**
 * The API's CA of the cluster this coordinator created, made on first use for clusters
 * created before it existed. Only the coordinator holds the cluster CA, and so this one.
 */
export async function loadOrCreateApiCa (dir: DataDir, clusterId: string): Promise<ApiCa> {
  if (!await exists(dir.caKey)) throw new DataDirError(`${dir.root} holds no cluster CA: the API's certificates come from the coordinator (the node where "mesh init" ran)`)
  const paths = apiCaPaths(dir)
  if (!await exists(paths.key) || !await exists(paths.cert)) return await createApiCa(dir, clusterId)
  return { certPem: await readFile(paths.cert, 'utf8'), keyPem: await readFile(paths.key, 'utf8') }
}

/**
 * The names a client may use to reach an API listening on `apiHost`: that address, or every
 * address of this machine when it listens on all of them, plus the host name and loopback.
 */
export function apiServerNames (apiHost: string): string[] {
  const names = new Set(['localhost', '127.0.0.1', '::1', hostname()])
  if (apiHost === '0.0.0.0' || apiHost === '::') {
    for (const addresses of Object.values(networkInterfaces())) {
      for (const address of addresses ?? []) names.add(address.address.replace(/%.*$/, ''))
    }
  } else {
    names.add(apiHost)
  }
  return [...names]
}

/** Issues the API's server certificate for `names` (IP addresses and DNS names), signed by `ca`. */
export async function issueApiServerCertificate (ca: ApiCa, names: readonly string[]): Promise<{ key: string, cert: string }> {
  const caCert = new x509.X509Certificate(ca.certPem)
  const caKey = await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(ca.keyPem), { ...KEY_ALGORITHM, ...SIGNING_ALGORITHM }, false, ['sign'])
  const keys = await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])
  const now = Date.now()
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `CN=${names.find(name => isIP(name) === 0 && name !== 'localhost') ?? 'llmesh API'}, O=llmesh`,
    issuer: caCert.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(Math.min(now + SERVER_LIFETIME_MS, caCert.notAfter.getTime())),
    signingAlgorithm: SIGNING_ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names.map(name => ({ type: isIP(name) !== 0 ? 'ip' as const : 'dns' as const, value: name }))),
      await x509.AuthorityKeyIdentifierExtension.create(caCert, false, webcrypto),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto)
    ]
  }, webcrypto)
  const key = x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY')
  // The chain a client needs beyond the CA it trusts: this certificate alone.
  return { key: key + '\n', cert: cert.toString('pem') + '\n' }
}
