import { encodeRequestHeader, RpcCommand, SET_TENSOR_CACHED_BYTES, SET_TENSOR_DATA_OFFSET, TunnelCommand } from './ggml-rpc.js'
import { RpcRequestValidator } from './request-validator.js'
import { tensorKeyHash, type CachedTensor } from './tensor-cache.js'
import { WeightLoading } from './weight-loading.js'

/** Coordinator: what one worker's tensor cache holds, as the worker said in the cap exchange. */
export class TensorInventory {
  readonly #keysBySize = new Map<number, Set<string>>()

  constructor (tensors: readonly CachedTensor[]) {
    for (const { key, bytes } of tensors) {
      let keys = this.#keysBySize.get(bytes)
      if (keys === undefined) this.#keysBySize.set(bytes, keys = new Set())
      keys.add(key)
    }
  }

  /** True when the worker holds nothing: there is nothing to look for. */
  get empty (): boolean {
    return this.#keysBySize.size === 0
  }

  /** True when the worker holds some data of this size: only then is a tensor worth hashing. */
  hasSize (bytes: number): boolean {
    return this.#keysBySize.has(bytes)
  }

  /** True when the worker holds the data named `key`. */
  has (bytes: number, key: string): boolean {
    return this.#keysBySize.get(bytes)?.has(key) === true
  }
}

/**
 * Coordinator: rewrites llama-server's requests to one worker so that a SET_TENSOR whose data
 * the worker's tensor cache holds crosses the tunnel as a SET_TENSOR_CACHED of a few hundred
 * bytes. Only while the weights load, and only a SET_TENSOR of a size the worker holds, is
 * held back (and hashed as it arrives); every other byte passes as it came, in order, and
 * once the weights are loaded the session's bytes pass untouched.
 */
export class SetTensorDeduplicator {
  readonly #framer: RpcRequestValidator
  readonly #weights = new WeightLoading()
  #out: Uint8Array[] = []
  /** the SET_TENSOR being held back */
  #held: HeldSetTensor | undefined

  constructor (inventory: TensorInventory) {
    // llama-server is local and trusted: the parser only frames its requests, it caps nothing.
    this.#framer = new RpcRequestValidator(Number.MAX_SAFE_INTEGER, {
      requestStart: (command, payloadBytes) => {
        this.#weights.request(command)
        const holdBack = this.#weights.loading && command === RpcCommand.SET_TENSOR && inventory.hasSize(payloadBytes - SET_TENSOR_DATA_OFFSET)
        this.#held = holdBack ? new HeldSetTensor() : undefined
        if (!holdBack) this.#out.push(encodeRequestHeader(command, payloadBytes))
      },
      requestPayload: part => {
        if (this.#held !== undefined) this.#held.add(part)
        else this.#out.push(part)
      },
      requestEnd: (command, payloadBytes) => {
        const held = this.#held
        if (held === undefined) return
        this.#held = undefined
        const dataBytes = payloadBytes - SET_TENSOR_DATA_OFFSET
        const key = held.key()
        if (inventory.has(dataBytes, key)) {
          this.#out.push(encodeRequestHeader(TunnelCommand.SET_TENSOR_CACHED, SET_TENSOR_CACHED_BYTES), cachedRequest(held.description, dataBytes, key))
        } else {
          this.#out.push(encodeRequestHeader(command, payloadBytes), ...held.parts)
        }
      }
    })
  }

  /** Takes the next bytes from llama-server; returns the bytes to send to the worker now, in order. */
  push (chunk: Uint8Array): Uint8Array[] {
    // Nothing is held back after loading: no need to follow requests any further, once the
    // framer has handed on every byte it took (part of a header waits in it until the rest comes).
    if (!this.#weights.loading && !this.#framer.midMessage) return [chunk]
    this.#framer.push(chunk)
    const out = this.#out
    this.#out = []
    return out
  }
}

/** A SET_TENSOR held back: its parts as they came, its description, and its data hashed as it arrives (no copy of the whole). */
class HeldSetTensor {
  readonly parts: Uint8Array[] = []
  /** rpc_tensor and offset: what precedes the data */
  readonly description = new Uint8Array(SET_TENSOR_DATA_OFFSET)
  readonly #hash = tensorKeyHash()
  #received = 0

  add (part: Uint8Array): void {
    this.parts.push(part)
    const describing = Math.max(0, Math.min(part.byteLength, SET_TENSOR_DATA_OFFSET - this.#received))
    if (describing > 0) this.description.set(part.subarray(0, describing), this.#received)
    if (describing < part.byteLength) this.#hash.update(part.subarray(describing))
    this.#received += part.byteLength
  }

  /** The key of the data; call once, after the last part. */
  key (): string {
    return this.#hash.digest('hex')
  }
}

/** SET_TENSOR_CACHED's payload: the SET_TENSOR's description (rpc_tensor and offset), the data size, the key. */
function cachedRequest (description: Uint8Array, dataBytes: number, key: string): Uint8Array {
  const request = new Uint8Array(SET_TENSOR_CACHED_BYTES)
  request.set(description)
  new DataView(request.buffer).setBigUint64(SET_TENSOR_DATA_OFFSET, BigInt(dataBytes), true)
  request.set(Buffer.from(key, 'hex'), SET_TENSOR_DATA_OFFSET + 8)
  return request
}
