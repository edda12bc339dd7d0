import { createHash, type Hash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdir, open, readdir, rename, rm, stat, symlink, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { encodeRequestHeader, RpcCommand, SET_TENSOR_DATA_OFFSET, TENSOR_KEY_BYTES } from './ggml-rpc.js'
import { RpcTensorCacheMissError } from './errors.js'
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

/** The data of a SET_TENSOR payload given in parts: the parts' views past its description (rpc_tensor and offset). */
function dataParts (payload: readonly Uint8Array[]): Uint8Array[] {
  let skip = SET_TENSOR_DATA_OFFSET
  const data: Uint8Array[] = []
  for (const part of payload) {
    if (skip >= part.byteLength) {
      skip -= part.byteLength
      continue
    }
    data.push(skip > 0 ? part.subarray(skip) : part)
    skip = 0
  }
  return data
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

/** The first `bytes` bytes of data given in parts (fewer if it is shorter). */
function leadingBytes (parts: readonly Uint8Array[], bytes: number): Uint8Array {
  const out: Uint8Array[] = []
  let left = bytes
  for (const part of parts) {
    if (left <= 0) break
    out.push(part.subarray(0, left))
    left -= Math.min(left, part.byteLength)
  }
  return Buffer.concat(out)
}

/**
 * Follows a session's requests to tell when the model's weights are loaded. llama.cpp sets
 * every weight before it computes anything; a SET_TENSOR after the first GRAPH_COMPUTE carries
 * a graph's inputs (hidden states of a prompt), which must never be kept or even hashed.
 */
export class WeightLoading {
  #done = false

  /** True until the session's first GRAPH_COMPUTE. */
  get loading (): boolean {
    return !this.#done
  }

  /** Sees the next request's command. */
  request (command: number): void {
    if (command === RpcCommand.GRAPH_COMPUTE) this.#done = true
  }
}

/**
 * Worker: keeps the data of the weights' SET_TENSOR requests, one file per tensor named by the
 * sha256 of its data: the only tensor cache on a worker (rpc-server runs without `--cache`).
 * A coordinator that loads a plan again (after a failure, say) learns from the cap exchange
 * what is cached and sends SET_TENSOR_CACHED instead of the data; the bridge expands it back
 * into the SET_TENSOR it stands for, so rpc-server sees ordinary requests.
 *
 * Files are only removed while the inventory is taken, before an engine start, least recently
 * used first, to keep the cache within its budget: what the coordinator was told stays.
 */
export class TensorCache {
  readonly #dir: string
  readonly #budgetBytes: () => number
  readonly #metrics: RpcTunnelMetrics
  readonly #log: Pick<Logger, 'error'>
  /** hashing and writing still under way */
  readonly #pending = new Set<Promise<void>>()
  readonly #keysBeingWritten = new Set<string>()
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
   * files beyond the budget. Waits for the data still being written.
   */
  async inventory (): Promise<CachedTensor[]> {
    await this.#created()
    await Promise.all(this.#pending)
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
    return kept
  }

  /**
   * One tunnel session: `observer` keeps the weights of every cacheable SET_TENSOR that passes
   * whole; `source` expands SET_TENSOR_CACHED and, while the weights load, answers a
   * SET_TENSOR_HASH whose data the cache holds (the worker then sets the data itself, and
   * the client sends nothing more). After the first graph computation nothing is kept or answered.
   */
  session (): { observer: RequestObserver, source: CachedTensorSource } {
    const weights = new WeightLoading()
    let parts: Uint8Array[] | undefined
    let hashRequest: Uint8Array[] | undefined
    /** the hash llama.cpp announced for the SET_TENSOR that follows its SET_TENSOR_HASH */
    let announced: { description: Uint8Array, hash: string } | undefined
    const observer: RequestObserver = {
      requestStart: (command, payloadBytes) => {
        weights.request(command)
        parts = weights.loading && command === RpcCommand.SET_TENSOR && isCacheableTensor(payloadBytes - SET_TENSOR_DATA_OFFSET) ? [] : undefined
        hashRequest = weights.loading && command === RpcCommand.SET_TENSOR_HASH && payloadBytes === HASH_REQUEST_BYTES ? [] : undefined
        if (command !== RpcCommand.SET_TENSOR) announced = undefined
      },
      requestPayload: part => {
        (parts ?? hashRequest)?.push(part)
      },
      requestEnd: () => {
        if (parts !== undefined) {
          const announces = announced !== undefined && sameDescription(leadingBytes(parts, SET_TENSOR_DATA_OFFSET), announced.description)
          this.#remember(parts, announces ? announced?.hash : undefined)
        }
        if (hashRequest !== undefined) {
          const request = Buffer.concat(hashRequest)
          announced = { description: request.subarray(0, SET_TENSOR_DATA_OFFSET), hash: requestHash(request) }
        }
        parts = undefined
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
    return { observer, source }
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

  // Hashing and writing wait for the next turn of the event loop, so the request they come
  // from reaches rpc-server first. A cache that cannot write only costs a whole send later.
  // `hash`: the FNV-1a hash llama.cpp announced for this data (tensors over 10 MiB), to link it by.
  #remember (payload: Uint8Array[], hash: string | undefined): void {
    const work = new Promise<void>(resolve => setImmediate(resolve)).then(async () => {
      // Hashed and written part by part: a copy of every tensor would double the first load's memory traffic.
      const data = dataParts(payload)
      const key = tensorKey(data)
      if (this.#keysBeingWritten.has(key)) return
      this.#keysBeingWritten.add(key)
      try {
        if (await this.#write(key, data) && hash !== undefined) await this.#link(hash, key)
      } finally {
        this.#keysBeingWritten.delete(key)
      }
    })
    this.#pending.add(work)
    void work.finally(() => this.#pending.delete(work))
  }

  // True once the file holds the data (written now or before).
  async #write (key: string, data: readonly Uint8Array[]): Promise<boolean> {
    const bytes = data.reduce((sum, part) => sum + part.byteLength, 0)
    try {
      await this.#created()
      const file = join(this.#dir, key)
      const exists = await stat(file).then(s => s.size === bytes, () => false)
      if (exists) return true
      const partial = join(this.#dir, `.${key}.partial`)
      const handle = await open(partial, 'w', 0o600)
      try {
        await handle.writev(data)
      } finally {
        await handle.close()
      }
      await rename(partial, file)
      this.#metrics.tensorCache('stored', bytes)
      return true
    } catch (err) {
      this.#log.error('cannot keep tensor data in the tensor cache %s: %s', this.#dir, (err as Error).message)
      return false
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
