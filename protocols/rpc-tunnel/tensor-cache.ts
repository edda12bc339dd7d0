import { createHash, randomBytes, type Hash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdir, open, readdir, rename, rm, stat, symlink, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { encodeRequestHeader, RpcCommand, SET_TENSOR_DATA_OFFSET, TENSOR_KEY_BYTES } from './ggml-rpc.js'
import { RpcTensorCacheMissError } from './errors.js'
import { TensorSpool, type SpoolBacklog } from './tensor-spool.js'
import { WeightLoading } from './weight-loading.js'
import type { RpcTunnelMetrics } from './metrics.js'
import type { CachedTensorSource, RequestObserver } from './request-validator.js'
import type { Logger } from '@libp2p/interface'

/** Tensor data in a worker's tensor cache: its key (the sha256 of the data, hex) and its size. */
export interface CachedTensor {
  key: string
  bytes: number
}

/**
 * The smallest tensor data worth a file: below this (norms, biases) a lookup costs more than
 * sending the data along with the rest of the load.
 */
export const MIN_CACHED_TENSOR_BYTES = 256 * 1024

const KEY_NAME = /^[0-9a-f]{64}$/
/**
 * A link to a tensor's file named by the FNV-1a hash that llama.cpp's RPC client sends in
 * SET_TENSOR_HASH before a tensor over 10 MiB: through it the worker answers that request itself.
 */
const HASH_LINK = /^fnv-([0-9a-f]{16})$/
/** SET_TENSOR_HASH's payload: rpc_tensor and offset (as SET_TENSOR's), then the FNV-1a hash u64 */
const HASH_REQUEST_BYTES = SET_TENSOR_DATA_OFFSET + 8

/** True for text that can be a tensor key (and so a file of the cache, never a path elsewhere). */
export function isTensorKey (text: string): boolean {
  return KEY_NAME.test(text)
}

/** A hash that gives tensor keys (`digest('hex')`), for data that arrives in parts. */
export function tensorKeyHash (): Hash {
  return createHash('sha256')
}

/** The key that names `data` (whole, or in parts) in a tensor cache: its sha256, hex. */
export function tensorKey (data: Uint8Array | readonly Uint8Array[]): string {
  const hash = tensorKeyHash()
  for (const part of data instanceof Uint8Array ? [data] : data) hash.update(part)
  return hash.digest('hex')
}

/**
 * True for tensor data of a size the tunnel's tensor cache keeps: every size worth a file. It
 * also takes the tensors above llama.cpp's hash threshold, because rpc-server runs without its
 * own cache (`--cache` saves every large SET_TENSOR, a prompt's hidden states included).
 */
export function isCacheableTensor (dataBytes: number): boolean {
  return dataBytes >= MIN_CACHED_TENSOR_BYTES
}

/** The FNV-1a hash in a SET_TENSOR_HASH payload, as 16 hex digits. */
function requestHash (request: Uint8Array): string {
  return new DataView(request.buffer, request.byteOffset, request.byteLength).getBigUint64(SET_TENSOR_DATA_OFFSET, true).toString(16).padStart(16, '0')
}

/** True when two payloads start with the same rpc_tensor and offset: a SET_TENSOR_HASH and the SET_TENSOR it announces. */
function sameDescription (a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength >= SET_TENSOR_DATA_OFFSET && b.byteLength >= SET_TENSOR_DATA_OFFSET &&
    Buffer.from(a.buffer, a.byteOffset, SET_TENSOR_DATA_OFFSET).equals(Buffer.from(b.buffer, b.byteOffset, SET_TENSOR_DATA_OFFSET))
}

/** A tensor's data written whole to its spool file, waiting to be hashed and named by its key. */
interface SpooledTensor {
  path: string
  bytes: number
  /** the FNV-1a hash llama.cpp announced for it (tensors over 10 MiB), to link it by */
  hash: string | undefined
}

/**
 * Spool files are named `.spool-TAG-N`: hidden, never a key, so never taken for cached data; the
 * tag is each cache's own, so a file left over by a process that ended is never one in use.
 */
const SPOOL_NAME = /^\.spool-[0-9a-f]+-\d+$/

/**
 * The most tensor data a worker holds in memory waiting for its disk. A disk slower than the
 * link must not fill the worker's memory during a load: tensors beyond this are not kept.
 */
export const MAX_SPOOL_BACKLOG_BYTES = 256 * 1024 * 1024

/** A spool file is hashed in reads of this size, so the event loop is never held long. */
const HASH_READ_BYTES = 1024 * 1024

/**
 * Worker: keeps the data of the weights' SET_TENSOR requests, one file per tensor named by the
 * sha256 of its data: the only tensor cache on a worker (rpc-server runs without `--cache`).
 * A coordinator that loads a plan again (after a failure, say) learns from the cap exchange
 * what is cached and sends SET_TENSOR_CACHED instead of the data; the bridge expands it back
 * into the SET_TENSOR it stands for, so rpc-server sees ordinary requests.
 *
 * Nothing of this is on the path of a load: while the weights pass, each tensor's data is only
 * written to a spool file, in the background, as it passes; once no session is loading weights
 * any more (its first graph computation, or its end), the spool files are hashed and renamed to
 * their keys, one at a time. Hashing 1 GB takes about a second of a core, time a load through
 * the tunnel would otherwise wait for.
 *
 * Files are only removed while the inventory is taken, before an engine start, least recently
 * used first, to keep the cache within its budget: what the coordinator was told stays.
 */
export class TensorCache {
  readonly #dir: string
  readonly #budgetBytes: () => number
  readonly #metrics: RpcTunnelMetrics
  readonly #log: Pick<Logger, 'error'>
  readonly #backlog: SpoolBacklog = { bytes: 0, maxBytes: MAX_SPOOL_BACKLOG_BYTES }
  /** spools whose tensor passed whole, still being written */
  readonly #closing = new Set<Promise<void>>()
  /** spool files waiting to be hashed, in the order their tensors passed */
  readonly #spooled: SpooledTensor[] = []
  /** spool files of this process (the others are left over from one that ended mid-write) */
  readonly #spoolPaths = new Set<string>()
  readonly #spoolTag = randomBytes(4).toString('hex')
  #spools = 0
  /** sessions still loading weights: spool files wait for them (the load needs the CPU) */
  #loading = 0
  /** inventories waiting: they hash what is spooled at once */
  #flushing = 0
  /** the spool file being hashed, undefined when none is */
  #hashing: Promise<void> | undefined
  #ready: Promise<void> | undefined

  /** `budgetBytes` is the most the files may take together, asked each time the inventory is taken. */
  constructor (dir: string, budgetBytes: () => number, metrics: RpcTunnelMetrics, log: Pick<Logger, 'error'>) {
    this.#dir = dir
    this.#budgetBytes = budgetBytes
    this.#metrics = metrics
    this.#log = log
  }

  /**
   * What the cache holds, most recently used first, after removing the least recently used
   * files beyond the budget. Waits for the data of the tensors that passed to be stored.
   */
  async inventory (): Promise<CachedTensor[]> {
    await this.#created()
    this.#flushing++
    try {
      await Promise.all(this.#closing)
      this.#hashNext()
      while (this.#hashing !== undefined) await this.#hashing
    } finally {
      this.#flushing--
    }
    const names = await readdir(this.#dir)
    const files = await Promise.all(names.filter(isTensorKey).map(async key => {
      const { size, mtimeMs } = await stat(join(this.#dir, key))
      return { key, bytes: size, usedAt: mtimeMs }
    }))
    files.sort((a, b) => b.usedAt - a.usedAt)
    const budget = this.#budgetBytes()
    const kept: CachedTensor[] = []
    let total = 0
    for (const { key, bytes } of files) {
      if (total + bytes <= budget) {
        kept.push({ key, bytes })
        total += bytes
      } else {
        await rm(join(this.#dir, key), { force: true })
      }
    }
    // Links whose file is gone (removed now, or never written whole).
    for (const link of names.filter(name => HASH_LINK.test(name))) {
      await stat(join(this.#dir, link)).catch(async () => { await rm(join(this.#dir, link), { force: true }) })
    }
    // Spool files of a process that ended while writing them.
    for (const name of names.filter(name => SPOOL_NAME.test(name) && !this.#spoolPaths.has(join(this.#dir, name)))) {
      await rm(join(this.#dir, name), { force: true })
    }
    return kept
  }

  /**
   * One tunnel session: `observer` keeps the weights of every cacheable SET_TENSOR that passes
   * whole; `source` expands SET_TENSOR_CACHED and, while the weights load, answers a
   * SET_TENSOR_HASH whose data the cache holds (the worker then sets the data itself, and
   * the client sends nothing more). After the first graph computation nothing is kept or
   * answered. `end` is called once the session is over.
   */
  session (): { observer: RequestObserver, source: CachedTensorSource, end: () => void } {
    const weights = new WeightLoading()
    let loading = true
    this.#loading++
    const loaded = (): void => {
      if (!loading) return
      loading = false
      this.#loading--
      this.#hashNext()
    }
    /** the cacheable SET_TENSOR passing now: its description (rpc_tensor and offset) and its data's spool */
    let passing: { description: Uint8Array, described: number, spool: TensorSpool } | undefined
    let hashRequest: Uint8Array[] | undefined
    /** the hash llama.cpp announced for the SET_TENSOR that follows its SET_TENSOR_HASH */
    let announced: { description: Uint8Array, hash: string } | undefined
    const observer: RequestObserver = {
      requestStart: (command, payloadBytes) => {
        weights.request(command)
        if (!weights.loading) loaded()
        const cacheable = weights.loading && command === RpcCommand.SET_TENSOR && isCacheableTensor(payloadBytes - SET_TENSOR_DATA_OFFSET)
        passing = cacheable ? { description: new Uint8Array(SET_TENSOR_DATA_OFFSET), described: 0, spool: this.#spool() } : undefined
        hashRequest = weights.loading && command === RpcCommand.SET_TENSOR_HASH && payloadBytes === HASH_REQUEST_BYTES ? [] : undefined
        if (command !== RpcCommand.SET_TENSOR) announced = undefined
      },
      requestPayload: part => {
        hashRequest?.push(part)
        if (passing === undefined) return
        const describing = Math.min(part.byteLength, SET_TENSOR_DATA_OFFSET - passing.described)
        if (describing > 0) {
          passing.description.set(part.subarray(0, describing), passing.described)
          passing.described += describing
        }
        if (describing < part.byteLength) passing.spool.add(describing > 0 ? part.subarray(describing) : part)
      },
      requestEnd: () => {
        if (passing !== undefined) {
          const announces = announced !== undefined && sameDescription(passing.description, announced.description)
          this.#close(passing.spool, announces ? announced?.hash : undefined)
        }
        if (hashRequest !== undefined) {
          const request = Buffer.concat(hashRequest)
          announced = { description: request.subarray(0, SET_TENSOR_DATA_OFFSET), hash: requestHash(request) }
        }
        passing = undefined
        hashRequest = undefined
      }
    }
    const source: CachedTensorSource = {
      expand: request => {
        const view = new DataView(request.buffer, request.byteOffset, request.byteLength)
        const bytes = Number(view.getBigUint64(SET_TENSOR_DATA_OFFSET, true))
        const key = Buffer.from(request.subarray(SET_TENSOR_DATA_OFFSET + 8, SET_TENSOR_DATA_OFFSET + 8 + TENSOR_KEY_BYTES)).toString('hex')
        const data = this.#read(key, bytes)
        this.#metrics.tensorCache('hit', bytes)
        return [encodeRequestHeader(RpcCommand.SET_TENSOR, SET_TENSOR_DATA_OFFSET + bytes), request.subarray(0, SET_TENSOR_DATA_OFFSET), data]
      },
      setByHash: request => {
        if (!weights.loading || request.byteLength !== HASH_REQUEST_BYTES) return undefined
        const link = join(this.#dir, `fnv-${requestHash(request)}`)
        let data: Buffer
        try {
          data = readFileSync(link)
        } catch {
          return undefined
        }
        const now = new Date()
        utimes(link, now, now).catch(() => {})
        this.#metrics.tensorCache('hit', data.byteLength)
        return [encodeRequestHeader(RpcCommand.SET_TENSOR, SET_TENSOR_DATA_OFFSET + data.byteLength), request.slice(0, SET_TENSOR_DATA_OFFSET), data]
      }
    }
    const end = (): void => {
      // A tensor cut off part-way is not the tensor.
      if (passing !== undefined) this.#discard(passing.spool)
      passing = undefined
      loaded()
    }
    return { observer, source, end }
  }

  // Read synchronously: the expansion must take the request's place in the session's order,
  // and the file was written moments ago or is in the page cache.
  #read (key: string, bytes: number): Uint8Array {
    let data: Buffer
    try {
      data = readFileSync(join(this.#dir, key))
    } catch (err) {
      throw new RpcTensorCacheMissError(key, (err as NodeJS.ErrnoException).code ?? (err as Error).message)
    }
    if (data.byteLength !== bytes) throw new RpcTensorCacheMissError(key, `the file holds ${data.byteLength} bytes, not ${bytes}`)
    const now = new Date()
    utimes(join(this.#dir, key), now, now).catch(() => {})
    return data
  }

  #spool (): TensorSpool {
    const path = join(this.#dir, `.spool-${this.#spoolTag}-${this.#spools++}`)
    this.#spoolPaths.add(path)
    return new TensorSpool(path, this.#backlog, this.#created())
  }

  // `hash`: the FNV-1a hash llama.cpp announced for this data (tensors over 10 MiB), to link it by.
  #close (spool: TensorSpool, hash: string | undefined): void {
    const closing = spool.close().then(whole => {
      if (whole) {
        this.#spooled.push({ path: spool.path, bytes: spool.bytes, hash })
        this.#hashNext()
      } else {
        this.#spoolPaths.delete(spool.path)
        this.#log.error('cannot keep tensor data in the tensor cache %s: its file could not be written, or the disk fell behind the load', this.#dir)
      }
    })
    this.#closing.add(closing)
    void closing.finally(() => this.#closing.delete(closing))
  }

  #discard (spool: TensorSpool): void {
    const discarded = spool.discard().then(() => { this.#spoolPaths.delete(spool.path) })
    this.#closing.add(discarded)
    void discarded.finally(() => this.#closing.delete(discarded))
  }

  // One spool file at a time, and only while no session loads weights (unless an inventory waits).
  #hashNext (): void {
    if (this.#hashing !== undefined || (this.#loading > 0 && this.#flushing === 0)) return
    const next = this.#spooled.shift()
    if (next === undefined) return
    this.#hashing = this.#store(next).finally(() => {
      this.#hashing = undefined
      this.#hashNext()
    })
  }

  // Names a spool file by the key of its data (or removes it, when the cache has that data already).
  async #store ({ path, bytes, hash }: SpooledTensor): Promise<void> {
    try {
      const key = await hashFile(path)
      const file = join(this.#dir, key)
      const exists = await stat(file).then(s => s.size === bytes, () => false)
      if (exists) {
        await rm(path, { force: true })
      } else {
        await rename(path, file)
        this.#metrics.tensorCache('stored', bytes)
      }
      if (hash !== undefined) await this.#link(hash, key)
    } catch (err) {
      this.#log.error('cannot keep tensor data in the tensor cache %s: %s', this.#dir, (err as Error).message)
      await rm(path, { force: true }).catch(() => {})
    } finally {
      this.#spoolPaths.delete(path)
    }
  }

  async #link (hash: string, key: string): Promise<void> {
    const link = join(this.#dir, `fnv-${hash}`)
    try {
      await rm(link, { force: true })
      await symlink(key, link)
    } catch (err) {
      this.#log.error('cannot link tensor data in the tensor cache %s by its hash: %s', this.#dir, (err as Error).message)
    }
  }

  async #created (): Promise<void> {
    this.#ready ??= mkdir(this.#dir, { recursive: true, mode: 0o700 }).then(() => {})
    await this.#ready
  }
}

/** The key of a file's data, read a part at a time. */
async function hashFile (path: string): Promise<string> {
  const hash = tensorKeyHash()
  const handle = await open(path, 'r')
  try {
    const buffer = Buffer.allocUnsafe(HASH_READ_BYTES)
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, null)
      if (bytesRead === 0) break
      hash.update(buffer.subarray(0, bytesRead))
    }
  } finally {
    await handle.close()
  }
  return hash.digest('hex')
}
