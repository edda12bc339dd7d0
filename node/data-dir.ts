import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf, publicKeyFromProtobuf } from '@libp2p/crypto/keys'
import { LevelDatastore } from 'datastore-level'
import { DataDirError } from './errors.js'
import type { PrivateKey, PublicKey } from '@libp2p/interface'

/** The files of a node's data dir. */
export interface DataDir {
  root: string
  /** the node's Ed25519 libp2p key (its PeerId), 0600 */
  nodeKey: string
  /** the cluster CA key, coordinator only, 0600 */
  caKey: string
  /** the HTTP API key, coordinator only, 0600 */
  apiKey: string
  /** cluster.json: cluster id, CA public key, coordinator addresses */
  config: string
  /** the level datastore: peer store, DHT records, membership state */
  datastore: string
  /** the UNIX control socket of the running node, 0600 */
  controlSocket: string
  /** worker: the tunnel's tensor cache, data of tensors the coordinator sent, one file each */
  tensorCache: string
}

/** Resolves the data dir from LLMESH_HOME (default ~/.llmesh). */
export function dataDir (root = process.env.LLMESH_HOME ?? join(homedir(), '.llmesh')): DataDir {
  return {
    root,
    nodeKey: join(root, 'node.key'),
    caKey: join(root, 'ca.key'),
    apiKey: join(root, 'api-key'),
    config: join(root, 'cluster.json'),
    datastore: join(root, 'datastore'),
    controlSocket: join(root, 'control.sock'),
    tensorCache: join(root, 'tensor-cache')
  }
}

/** What a node knows about its cluster; written by `mesh init` and `mesh join`. */
export interface ClusterConfig {
  clusterId: string
  /** base64 protobuf of the cluster CA public key */
  caPublicKey: string
  /** where a worker finds the coordinator (multiaddrs with /p2p/); empty on the coordinator */
  coordinatorAddrs: string[]
}

/** Creates the data dir (0700) if needed. */
export async function ensureDataDir (dir: DataDir): Promise<void> {
  await mkdir(dir.root, { recursive: true, mode: 0o700 })
}

/** Writes a secret file readable only by its owner. */
export async function writeSecretFile (path: string, data: Uint8Array | string): Promise<void> {
  await writeFile(path, data, { mode: 0o600 })
  await chmod(path, 0o600)
}

/** True when the file exists. */
export async function exists (path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false)
}

/** Loads a private key file; a missing or corrupt file is a DataDirError, never a new key. */
export async function loadPrivateKey (path: string, what: string): Promise<PrivateKey> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch {
    throw new DataDirError(`${what} ${path} is missing; run "mesh init" (new cluster) or "mesh join <invite>" (existing cluster), or point LLMESH_HOME at the right data dir`)
  }
  try {
    return privateKeyFromProtobuf(bytes)
  } catch {
    throw new DataDirError(`${what} ${path} is corrupt; restore it from a backup, or remove the data dir and join the cluster again`)
  }
}

/** Loads the node key, or creates one when the data dir has none yet (init and join only). */
export async function loadOrCreateNodeKey (dir: DataDir): Promise<PrivateKey> {
  if (await exists(dir.nodeKey)) return loadPrivateKey(dir.nodeKey, 'the node key')
  const key = await generateKeyPair('Ed25519')
  await writeSecretFile(dir.nodeKey, privateKeyToProtobuf(key))
  return key
}

/** Reads cluster.json; missing or corrupt is a DataDirError with what to do. */
export async function readClusterConfig (dir: DataDir): Promise<ClusterConfig> {
  let text: string
  try {
    text = await readFile(dir.config, 'utf8')
  } catch {
    throw new DataDirError(`${dir.root} holds no cluster (no ${dir.config}); run "mesh init" to create one or "mesh join <invite>" to join one`)
  }
  try {
    const value = JSON.parse(text) as ClusterConfig
    if (typeof value.clusterId !== 'string' || typeof value.caPublicKey !== 'string' || !Array.isArray(value.coordinatorAddrs)) throw new Error('fields')
    publicKeyFromProtobuf(Buffer.from(value.caPublicKey, 'base64'))
    return value
  } catch {
    throw new DataDirError(`${dir.config} is corrupt; restore it from a backup, or remove the data dir and join the cluster again`)
  }
}

/** Writes cluster.json. */
export async function writeClusterConfig (dir: DataDir, config: ClusterConfig): Promise<void> {
  await writeFile(dir.config, JSON.stringify(config, null, 2) + '\n', { mode: 0o644 })
}

/** The CA public key named by a cluster config. */
export function caPublicKey (config: ClusterConfig): PublicKey {
  return publicKeyFromProtobuf(Buffer.from(config.caPublicKey, 'base64'))
}

/** Opens the level datastore; a second process on the same dir gets a clear error. */
export async function openDatastore (dir: DataDir): Promise<LevelDatastore> {
  const store = new LevelDatastore(dir.datastore)
  try {
    await store.open()
  } catch (err) {
    const text = String((err as { cause?: unknown }).cause ?? err)
    if (/lock/i.test(text)) throw new DataDirError(`the data dir ${dir.root} is in use by a running node; stop it first, or talk to it with "mesh status", "mesh token" or "mesh revoke"`)
    throw new DataDirError(`cannot open the datastore ${dir.datastore} (${text}); restore it from a backup, or remove the data dir and join the cluster again`)
  }
  return store
}
