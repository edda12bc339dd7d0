import { createHash } from 'node:crypto'
import { Key, type Datastore } from 'interface-datastore'
import { canonicalJson } from './canonical-json.js'
import { ControlRequestError } from './errors.js'
import type { ControlRequest } from './control-socket.js'

/** What the API knows about a finished request: counts and outcome, never its content. */
export interface AuditFacts {
  /** the request's id as the API assigned it */
  requestId: string
  /** the id of the API key that made the request (hashed before it is stored), null when none */
  apiKeyId: string | null
  /** the model the request named, null when it named none */
  model: string | null
  promptTokens: number
  completionTokens: number
  /** from the request's arrival to the end of its response */
  durationMs: number
  /** the HTTP status of the response */
  status: number
}

/** One record of the ledger, as stored. */
export interface AuditRecord {
  /** position in the chain, from 1 */
  seq: number
  /** when the request finished, ISO 8601 */
  time: string
  requestId: string
  /** sha256 of the key id (hex, first 16 characters), null when the request had no key */
  keyIdHash: string | null
  model: string | null
  promptTokens: number
  completionTokens: number
  durationMs: number
  status: number
  /** `hash` of the record before (64 zeros for the first) */
  prev: string
  /** sha256 of the canonical JSON of every other field */
  hash: string
}

/** The result of checking the whole chain. */
export interface AuditVerification {
  ok: boolean
  /** records checked (all of them when ok) */
  records: number
  /** the first record that does not verify, when not ok */
  badSeq: number | null
  /** why it does not verify, when not ok */
  reason: string | null
}

interface Head {
  seq: number
  hash: string
}

const GENESIS = '0'.repeat(64)
const HEAD = new Key('/llmesh/audit/head')
const RECORDS = '/llmesh/audit/records'
// Zero-padded so that the datastore's key order is the chain's order.
const recordKey = (seq: number): Key => new Key(`${RECORDS}/${String(seq).padStart(16, '0')}`)

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** The hash a record must carry: sha256 over the canonical JSON of all its fields but `hash`. */
export function recordHash (record: Omit<AuditRecord, 'hash'>): string {
  const { seq, time, requestId, keyIdHash, model, promptTokens, completionTokens, durationMs, status, prev } = record
  return createHash('sha256').update(canonicalJson({ seq, time, requestId, keyIdHash, model, promptTokens, completionTokens, durationMs, status, prev })).digest('hex')
}

/** How an API key id appears in the ledger: enough to tell keys apart, not to name them. */
export function hashKeyId (keyId: string): string {
  return createHash('sha256').update(keyId).digest('hex').slice(0, 16)
}

/**
 * A hash-chained, append-only ledger of finished API requests in the node's level datastore.
 * Each append writes the record and the new head in one batch, so a crash leaves either both
 * or neither; each record names the hash of the one before, so an edit anywhere breaks the chain.
 */
export class AuditLedger {
  readonly #store: Datastore
  // Appends run one at a time: each needs the head the previous one wrote.
  #queue: Promise<unknown> = Promise.resolve()

  constructor (store: Datastore) {
    this.#store = store
  }

  /** Appends one record and returns it. */
  async append (facts: AuditFacts, now = new Date()): Promise<AuditRecord> {
    const next = this.#queue.then(async () => {
      const head = await this.#head()
      const body: Omit<AuditRecord, 'hash'> = {
        seq: head.seq + 1,
        time: now.toISOString(),
        requestId: facts.requestId,
        keyIdHash: facts.apiKeyId === null ? null : hashKeyId(facts.apiKeyId),
        model: facts.model,
        promptTokens: facts.promptTokens,
        completionTokens: facts.completionTokens,
        durationMs: Math.round(facts.durationMs),
        status: facts.status,
        prev: head.hash
      }
      const record: AuditRecord = { ...body, hash: recordHash(body) }
      const batch = this.#store.batch()
      batch.put(recordKey(record.seq), encoder.encode(JSON.stringify(record)))
      batch.put(HEAD, encoder.encode(JSON.stringify({ seq: record.seq, hash: record.hash } satisfies Head)))
      await batch.commit()
      return record
    })
    this.#queue = next.catch(() => {})
    return await next
  }

  /** The last `count` records, oldest first; a record that no longer parses is skipped (verify names it). */
  async tail (count: number): Promise<AuditRecord[]> {
    const head = await this.#head()
    const out: AuditRecord[] = []
    for (let seq = Math.max(1, head.seq - count + 1); seq <= head.seq; seq++) {
      const record = await this.#read(seq).catch(() => undefined)
      if (record !== undefined) out.push(record)
    }
    return out
  }

  /** Checks every record against its hash and its predecessor, and the head against the last record. */
  async verify (): Promise<AuditVerification> {
    const head = await this.#head()
    let prev = GENESIS
    let seq = 0
    for await (const { key, value } of this.#store.query({ prefix: RECORDS })) {
      seq++
      const bad = (reason: string): AuditVerification => ({ ok: false, records: seq - 1, badSeq: seq, reason })
      if (key.toString() !== recordKey(seq).toString()) return bad(`record ${seq} is missing (found ${key.baseNamespace()} next)`)
      let record: AuditRecord
      try {
        record = JSON.parse(decoder.decode(value)) as AuditRecord
      } catch {
        return bad(`record ${seq} is not readable JSON`)
      }
      if (record.seq !== seq) return bad(`record ${seq} says it is number ${String(record.seq)}`)
      if (record.prev !== prev) return bad(`record ${seq} does not follow record ${seq - 1} (its prev hash differs)`)
      if (recordHash(record) !== record.hash) return bad(`record ${seq} was altered (its content does not match its hash)`)
      prev = record.hash
    }
    if (head.seq !== seq || head.hash !== prev) {
      return { ok: false, records: seq, badSeq: head.seq, reason: `the ledger head names record ${head.seq} but the chain ends at record ${seq}` }
    }
    return { ok: true, records: seq, badSeq: null, reason: null }
  }

  async #head (): Promise<Head> {
    if (!await this.#store.has(HEAD)) return { seq: 0, hash: GENESIS }
    return JSON.parse(decoder.decode(await this.#store.get(HEAD))) as Head
  }

  async #read (seq: number): Promise<AuditRecord> {
    return JSON.parse(decoder.decode(await this.#store.get(recordKey(seq)))) as AuditRecord
  }
}

/** Answers the control requests `mesh audit` sends to a running node: "audit-tail" {count} and "audit-verify". */
export async function answerAuditRequest (ledger: AuditLedger, request: ControlRequest): Promise<AuditRecord[] | AuditVerification> {
  if (request.op === 'audit-verify') return await ledger.verify()
  const count = Number(request.count)
  if (!Number.isSafeInteger(count) || count < 1) throw new ControlRequestError('count must be a whole number of at least 1')
  return await ledger.tail(count)
}
