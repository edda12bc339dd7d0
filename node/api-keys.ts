import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { stat } from 'node:fs/promises'
import { Key, type Datastore } from 'interface-datastore'
import { DEFAULT_API_KEY_ID, type ApiKeyVerifier } from '../api/auth.js'
import { ApiKeyNotFoundError, ControlRequestError } from './errors.js'
import type { ControlRequest } from './control-socket.js'

/** What `mesh key list` shows of a key: never the key, nor its hash. */
export interface ApiKeyInfo {
  id: string
  name: string
  /** ISO 8601 time of creation */
  created: string
}

/** A key just added: the only time the key itself is seen. */
export interface NewApiKey extends ApiKeyInfo {
  key: string
}

interface ApiKeyRecord extends ApiKeyInfo {
  /** sha256 of the key, hex */
  sha256: string
}

const PREFIX = '/llmesh/api-keys/'
const recordKey = (id: string): Key => new Key(PREFIX + id)
const encoder = new TextEncoder()
const decoder = new TextDecoder()

function sha256 (text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

/**
 * The API keys `mesh key add` created, kept hashed in the node's level datastore and in memory,
 * so the API verifies a key without touching the disk and sees additions and revocations at once.
 */
export class ApiKeyStore implements ApiKeyVerifier {
  readonly #store: Datastore
  readonly #records = new Map<string, ApiKeyRecord & { digest: Buffer }>()

  private constructor (store: Datastore) {
    this.#store = store
  }

  /** Loads the stored keys of `store`. */
  static async open (store: Datastore): Promise<ApiKeyStore> {
    const keys = new ApiKeyStore(store)
    for await (const { value } of store.query({ prefix: PREFIX })) keys.#remember(JSON.parse(decoder.decode(value)) as ApiKeyRecord)
    return keys
  }

  #remember (record: ApiKeyRecord): void {
    this.#records.set(record.id, { ...record, digest: Buffer.from(record.sha256, 'hex') })
  }

  /** Creates a random key named `name`, stores its hash and returns it: the only time it is readable. */
  async add (name: string): Promise<NewApiKey> {
    const key = `sk-mesh-${randomBytes(32).toString('base64url')}`
    const info: ApiKeyInfo = { id: `key_${randomBytes(8).toString('hex')}`, name, created: new Date().toISOString() }
    const record: ApiKeyRecord = { ...info, sha256: sha256(key).toString('hex') }
    await this.#store.put(recordKey(info.id), encoder.encode(JSON.stringify(record)))
    this.#remember(record)
    return { ...info, key }
  }

  /** The stored keys, oldest first. */
  list (): ApiKeyInfo[] {
    return [...this.#records.values()]
      .map(({ id, name, created }) => ({ id, name, created }))
      .sort((a, b) => a.created.localeCompare(b.created))
  }

  /** Deletes the key `id`; requests with it are refused from now on. */
  async revoke (id: string): Promise<ApiKeyInfo> {
    const record = this.#records.get(id)
    if (record === undefined) {
      if (id === DEFAULT_API_KEY_ID) throw new ApiKeyNotFoundError('the default key is the one "mesh init" wrote to the data dir\'s api-key file; it cannot be revoked, re-run "mesh init --force" to replace the cluster and its key')
      throw new ApiKeyNotFoundError(`no API key has the id "${id}"; "mesh key list" shows the ids`)
    }
    await this.#store.delete(recordKey(id))
    this.#records.delete(id)
    return { id: record.id, name: record.name, created: record.created }
  }

  /** The id of the stored key `key`, or null; every stored digest is compared, in constant time. */
  verify (key: string): string | null {
    const digest = sha256(key)
    let found: string | null = null
    for (const record of this.#records.values()) {
      if (timingSafeEqual(digest, record.digest)) found = record.id
    }
    return found
  }
}

/** The default key's row for `mesh key list` (created when `mesh init` wrote the file); none on a worker. */
export async function defaultKeyInfo (apiKeyFile: string): Promise<ApiKeyInfo[]> {
  try {
    const { mtime } = await stat(apiKeyFile)
    return [{ id: DEFAULT_API_KEY_ID, name: 'mesh init', created: mtime.toISOString() }]
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
}

/** Answers the control socket's key operations (`key-add`, `key-list`, `key-revoke`) of `mesh key`. */
export async function apiKeyControl (keys: ApiKeyStore, apiKeyFile: string, request: ControlRequest): Promise<unknown> {
  switch (request.op) {
    case 'key-add':
      return await keys.add(typeof request.name === 'string' ? request.name : '')
    case 'key-list':
      return [...await defaultKeyInfo(apiKeyFile), ...keys.list()]
    case 'key-revoke':
      return await keys.revoke(String(request.id))
    default:
      throw new ControlRequestError(`unknown control operation "${request.op}"`)
  }
}
