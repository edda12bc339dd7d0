import { peerIdFromString } from '@libp2p/peer-id'
import { isCapabilities, type Capabilities } from './capabilities.js'
import { parseCertificate, verifyCertificate, type Certificate, type TrustAnchor } from './certificate.js'
import { CertificateError } from './errors.js'
import { isSignedDocument, signDocument, verifyDocument, type SignedDocument } from './signed-document.js'
import type { SequenceHighWater } from './sequence-high-water.js'
import type { KadDHT, SelectFn, ValidateFn } from '@libp2p/kad-dht'
import type { PrivateKey } from '@libp2p/interface'

/** DHT key namespace of capability records: /llmesh-caps/<PeerId>. */
export const CAPABILITY_NAMESPACE = 'llmesh-caps'

/** The signed content of a member's capability record. */
export interface CapabilityRecordBody {
  peerId: string
  /** higher replaces lower; the publisher uses its clock in ms */
  seq: number
  capabilities: Capabilities
  /** the publisher's membership certificate, so any member can validate the record */
  certificate: Certificate
}

/** A capability record signed by the member it describes. */
export type CapabilityRecord = SignedDocument<CapabilityRecordBody>

const DOMAIN = 'capabilities/1'
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** The DHT key of a member's capability record. */
export function capabilityKey (peerId: string): Uint8Array {
  return encoder.encode(`/${CAPABILITY_NAMESPACE}/${peerId}`)
}

/** Signs this member's capability record with its node key. */
export async function signCapabilityRecord (body: CapabilityRecordBody, nodeKey: PrivateKey): Promise<Uint8Array> {
  return encoder.encode(JSON.stringify(await signDocument(DOMAIN, body, nodeKey)))
}

/** Parses and fully checks a record found under `key`: shape, member signature, certificate. */
export async function verifyCapabilityRecord (key: Uint8Array, value: Uint8Array, trust: TrustAnchor): Promise<CapabilityRecord> {
  let doc: unknown
  try {
    doc = JSON.parse(decoder.decode(value))
  } catch {
    throw new CertificateError('the capability record is not JSON', 'schema')
  }
  if (!isSignedDocument(doc)) throw new CertificateError('the capability record is not a signed document', 'schema')
  const body = doc.body
  const peerId = decoder.decode(key).split('/')[2]
  if (body.peerId !== peerId || !Number.isSafeInteger(body.seq) || !isCapabilities(body.capabilities)) {
    throw new CertificateError('the capability record is malformed or stored under another member\'s key', 'schema')
  }
  const certificate = parseCertificate(body.certificate)
  const publicKey = peerIdFromString(peerId).publicKey
  if (publicKey === undefined) throw new CertificateError('the capability record names a PeerId without an inline key', 'schema')
  await verifyDocument(DOMAIN, doc, publicKey)
  await verifyCertificate(certificate, peerId, trust)
  return doc as unknown as CapabilityRecord
}

/** Where refused records are counted. */
export interface RecordRejectionCounter {
  rejectedRecord: (reason: string) => void
}

/**
 * DHT validators: only records signed by a current member are stored or accepted, and none
 * older than the newest this node has seen of that member. kad-dht runs the validator on
 * every PUT it stores, every record it reads back and every value a lookup receives, but the
 * selector only on lookups: this order check is what keeps an older record from replacing a
 * newer one, here or in what this node serves.
 */
export function capabilityValidators (trust: TrustAnchor, newest: SequenceHighWater, counter: RecordRejectionCounter): Record<string, ValidateFn> {
  return {
    [CAPABILITY_NAMESPACE]: async (key, value) => {
      let record: CapabilityRecord
      try {
        record = await verifyCapabilityRecord(key, value, trust)
      } catch (err) {
        counter.rejectedRecord(err instanceof CertificateError ? err.reason : 'invalid')
        throw err
      }
      const { peerId, seq } = record.body
      if (seq < await newest.get(peerId)) {
        counter.rejectedRecord('stale')
        throw new CertificateError(`the capability record of ${peerId} (sequence ${seq}) is older than one already seen`, 'stale')
      }
      await newest.raise(peerId, seq)
    }
  }
}

/** DHT selectors: the record with the highest sequence number wins. */
export function capabilitySelectors (): Record<string, SelectFn> {
  return {
    [CAPABILITY_NAMESPACE]: (_key, records) => {
      let best = 0
      let bestSeq = -1
      records.forEach((record, i) => {
        try {
          const seq = (JSON.parse(decoder.decode(record)) as { body: { seq: number } }).body.seq
          if (Number.isSafeInteger(seq) && seq > bestSeq) {
            best = i
            bestSeq = seq
          }
        } catch {
          // An unparseable record never wins; the validator has rejected it already.
        }
      })
      return best
    }
  }
}

/** Stores this member's record in the DHT; returns how many peers accepted it. */
export async function publishCapabilityRecord (dht: KadDHT, peerId: string, value: Uint8Array, signal?: AbortSignal): Promise<number> {
  let accepted = 0
  for await (const event of dht.put(capabilityKey(peerId), value, { signal })) {
    if (event.name === 'PEER_RESPONSE') accepted++
  }
  return accepted
}

/**
 * How long a capability lookup may take, in ms: a few of the DHT's per-peer request timeouts
 * (private-dht.ts), so that a member that stopped answering costs a lookup time, not its result.
 */
export const CAPABILITY_LOOKUP_MS = 5000

/** Reads a member's best capability record from the DHT (local store first, then peers). */
export async function findCapabilityRecord (dht: KadDHT, peerId: string, trust: TrustAnchor, signal?: AbortSignal): Promise<CapabilityRecordBody | undefined> {
  let best: CapabilityRecordBody | undefined
  for await (const event of dht.get(capabilityKey(peerId), { signal })) {
    if (event.name !== 'VALUE') continue
    try {
      const record = await verifyCapabilityRecord(capabilityKey(peerId), event.value, trust)
      if (best === undefined || record.body.seq > best.seq) best = record.body
    } catch {
      // A peer served an invalid record: skip it, another peer may hold a valid one.
    }
  }
  return best
}
