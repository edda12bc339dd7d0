import { Key, type Datastore } from 'interface-datastore'

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/**
 * The highest sequence number seen per signer, persisted in the node's datastore so that a
 * restart does not let an older, genuinely signed record in again. kad-dht stores a PUT once
 * the validator accepts it, without asking the selector whether it is newer than the record
 * it holds: the validator must refuse what is older than the high-water mark itself.
 */
export class SequenceHighWater {
  private readonly datastore: Datastore
  private readonly prefix: string
  private readonly cache = new Map<string, number>()

  /** `prefix`: the datastore namespace of this kind of record, e.g. /llmesh/seq/caps */
  constructor (datastore: Datastore, prefix: string) {
    this.datastore = datastore
    this.prefix = prefix
  }

  private key (signer: string): Key {
    return new Key(`${this.prefix}/${signer}`)
  }

  /** The highest sequence number accepted from `signer`; -1 for none. */
  async get (signer: string): Promise<number> {
    const cached = this.cache.get(signer)
    if (cached !== undefined) return cached
    const key = this.key(signer)
    const seq = await this.datastore.has(key) ? Number(decoder.decode(await this.datastore.get(key))) : -1
    this.cache.set(signer, Math.max(seq, this.cache.get(signer) ?? -1))
    return this.cache.get(signer) ?? -1
  }

  /** Raises the mark of `signer` to `seq` if it is higher. */
  async raise (signer: string, seq: number): Promise<void> {
    if (seq <= await this.get(signer)) return
    this.cache.set(signer, seq)
    await this.datastore.put(this.key(signer), encoder.encode(String(seq)))
  }
}
