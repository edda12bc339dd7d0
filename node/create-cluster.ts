import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { generateKeyPair, privateKeyToProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { bundledLlamaCppSource } from '../engine/llama-cpp/source.js'
import { issueCertificate, type Certificate } from './certificate.js'
import { isAnswering } from './control-socket.js'
import { createApiCa } from './api-certificate.js'
import { ensureDataDir, exists, loadOrCreateNodeKey, openDatastore, readClusterConfig, writeClusterConfig, writeSecretFile, type DataDir } from './data-dir.js'
import { ClusterExistsError, DataDirError } from './errors.js'
import { LOCAL_FEATURES } from './features.js'
import { MembershipStore } from './membership-store.js'

/** What `mesh init` created. */
export interface CreatedCluster {
  clusterId: string
  peerId: string
  certificate: Certificate
}

const TEN_YEARS_MS = 10 * 365 * 24 * 3600 * 1000

/**
 * Creates a cluster in `dir`: CA key, cluster id, API key, cluster.json, and the
 * coordinator's own certificate. Refuses to replace an existing cluster unless `force`.
 */
export async function createCluster (dir: DataDir, force: boolean): Promise<CreatedCluster> {
  if (await isAnswering(dir.controlSocket)) throw new DataDirError(`a node is running on ${dir.root}; stop it before creating a cluster there`)
  if (await exists(dir.config)) {
    if (!force) {
      const existing = await readClusterConfig(dir).then(c => `cluster ${c.clusterId}`, () => 'a cluster')
      throw new ClusterExistsError(`${dir.root} already holds ${existing}; pass --force to replace it (every member must then join again)`)
    }
    await Promise.all([dir.datastore, dir.caKey, dir.apiKey, dir.config].map(async path => rm(path, { recursive: true, force: true })))
  }
  await ensureDataDir(dir)
  const nodeKey = await loadOrCreateNodeKey(dir)
  const caKey = await generateKeyPair('Ed25519')
  await writeSecretFile(dir.caKey, privateKeyToProtobuf(caKey))
  await writeSecretFile(dir.apiKey, randomBytes(32).toString('base64url') + '\n')
  const clusterId = `llmesh-${randomBytes(6).toString('hex')}`
  await writeClusterConfig(dir, { clusterId, caPublicKey: Buffer.from(publicKeyToProtobuf(caKey.publicKey)).toString('base64'), coordinatorAddrs: [] })
  // Replaced with the cluster: HTTPS clients of the old one must not trust the new one's API.
  await createApiCa(dir, clusterId)
  const peerId = peerIdFromPrivateKey(nodeKey).toString()
  const datastore = await openDatastore(dir)
  try {
    const store = new MembershipStore(datastore)
    const now = Date.now()
    const certificate = await issueCertificate({
      peerId,
      role: 'coordinator',
      clusterId,
      notBefore: now - 60_000,
      notAfter: now + TEN_YEARS_MS,
      serial: await store.nextSerial(),
      features: LOCAL_FEATURES,
      llamaCppTag: bundledLlamaCppSource().tag
    }, caKey)
    await store.setSelfCertificate(certificate)
    return { clusterId, peerId, certificate }
  } finally {
    await datastore.close()
  }
}
