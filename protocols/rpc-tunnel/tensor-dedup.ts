import { encodeRequestHeader, RpcCommand, SET_TENSOR_CACHED_BYTES, SET_TENSOR_DATA_OFFSET, TunnelCommand } from './ggml-rpc.js'
import { RpcRequestValidator } from './request-validator.js'
import { tensorKey, WeightLoading, type CachedTensor } from './tensor-cache.js'

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
 * held back whole and hashed; every other byte passes as it came, in order, and once the
 * weights are loaded the session's bytes pass untouched.
 */
export class SetTensorDeduplicator {
  readonly #framer: RpcRequestValidator
  readonly #weights = new WeightLoading()
  #out: Uint8Array[] = []
  /** the payload of the SET_TENSOR being held back, in parts */
  #held: Uint8Array[] | undefined

  constructor (inventory: TensorInventory) {
    // llama-server is local and trusted: the parser only frames its requests, it caps nothing.
    this.#framer = new RpcRequestValidator(Number.MAX_SAFE_INTEGER, {
      requestStart: (command, payloadBytes) => {
        this.#weights.request(command)
        const holdBack = this.#weights.loading && command === RpcCommand.SET_TENSOR && inventory.hasSize(payloadBytes - SET_TENSOR_DATA_OFFSET)
        this.#held = holdBack ? [] : undefined
        if (!holdBack) this.#out.push(encodeRequestHeader(command, payloadBytes))
      },
      requestPayload: part => { (this.#held ?? this.#out).push(part) },
      requestEnd: (command, payloadBytes) => {
        const held = this.#held
        if (held === undefined) return
        this.#held = undefined
        const payload = Buffer.concat(held)
        const dataBytes = payloadBytes - SET_TENSOR_DATA_OFFSET
        const key = tensorKey(payload.subarray(SET_TENSOR_DATA_OFFSET))
        if (inventory.has(dataBytes, key)) {
          this.#out.push(encodeRequestHeader(TunnelCommand.SET_TENSOR_CACHED, SET_TENSOR_CACHED_BYTES), cachedRequest(payload, dataBytes, key))
        } else {
          this.#out.push(encodeRequestHeader(command, payloadBytes), payload)
        }
      }
    })
  }

  /** Takes the next bytes from llama-server; returns the bytes to send to the worker now, in order. */
  push (chunk: Uint8Array): Uint8Array[] {
    // Nothing is held back after loading: no need to follow requests any further.
    if (!this.#weights.loading) return [chunk]
    this.#framer.push(chunk)
    const out = this.#out
    this.#out = []
    return out
  }
}

/** SET_TENSOR_CACHED's payload: the SET_TENSOR's rpc_tensor and offset, the data size, the key. */
function cachedRequest (setTensorPayload: Uint8Array, dataBytes: number, key: string): Uint8Array {
  const request = new Uint8Array(SET_TENSOR_CACHED_BYTES)
  request.set(setTensorPayload.subarray(0, SET_TENSOR_DATA_OFFSET))
  new DataView(request.buffer).setBigUint64(SET_TENSOR_DATA_OFFSET, BigInt(dataBytes), true)
  request.set(Buffer.from(key, 'hex'), SET_TENSOR_DATA_OFFSET + 8)
  return request
}
