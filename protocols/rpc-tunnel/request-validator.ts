import { COMMAND_NAMES, commandName, encodeRequestHeader, FIXED_REQUEST_BYTES, isKnownCommand, REQUEST_HEADER_BYTES, RpcCommand, SET_TENSOR_CACHED_BYTES, SET_TENSOR_DATA_OFFSET, TunnelCommand } from './ggml-rpc.js'
import { RpcHelloExpectedError, RpcMessageTooLargeError, RpcRequestSizeError, RpcTunnelError, RpcTunnelOptionsError, UnknownRpcCommandError } from './errors.js'

/** Sees each request as the validator lets it through, to count bytes and time. */
export interface RequestObserver {
  /** a request's header was accepted; its payload follows */
  requestStart: (command: number, payloadBytes: number) => void
  /** the next part of the request's payload was let through */
  requestPayload?: (part: Uint8Array) => void
  /** the request's last byte was let through */
  requestEnd: (command: number, payloadBytes: number) => void
}

/** Worker: where a SET_TENSOR_CACHED request's data comes from. */
export interface CachedTensorSource {
  /** the SET_TENSOR request (header and payload, in parts) that SET_TENSOR_CACHED's payload stands for; throws an RpcTunnelError when the data is not cached */
  expand: (request: Uint8Array) => Uint8Array[]
  /**
   * for a SET_TENSOR_HASH payload (rpc_tensor | offset | the data's FNV-1a hash): the SET_TENSOR
   * (header and payload, in parts) to pass on instead when the cache holds that data, so that
   * the client need not send it; undefined to pass the request on as it came
   */
  setByHash?: (request: Uint8Array) => Uint8Array[] | undefined
}

/** SET_TENSOR_HASH's answer when the server holds the data: size u64 LE 1 | result u8 1. */
export const SET_TENSOR_HASH_HELD_RESPONSE: Uint8Array = Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 0, 1)

/** One observer that tells each of `observers` in turn. */
export function observeAll (...observers: RequestObserver[]): RequestObserver {
  return {
    requestStart: (command, payloadBytes) => { for (const observer of observers) observer.requestStart(command, payloadBytes) },
    requestPayload: part => { for (const observer of observers) observer.requestPayload?.(part) },
    requestEnd: (command, payloadBytes) => { for (const observer of observers) observer.requestEnd(command, payloadBytes) }
  }
}

/**
 * Checks the client -> rpc-server byte stream of one ggml-rpc session, chunk by chunk as it
 * arrives, and returns only bytes that may reach rpc-server: a request header is held back
 * until it is complete and valid, so a refused request never reaches rpc-server in part.
 * Refuses (throws an RpcTunnelError): a first command other than HELLO, a later HELLO, a
 * command byte this release does not define, a fixed-size request of the wrong size, and
 * a payload larger than `maxMessageBytes`. After a refusal every further chunk is refused.
 * With a `cachedTensors` source it also accepts the tunnel's SET_TENSOR_CACHED and passes on
 * the SET_TENSOR it stands for instead, and may answer a SET_TENSOR_HASH itself: it then passes
 * on the SET_TENSOR of the cached data and calls `hashAnswered`, whose caller sends the client
 * SET_TENSOR_HASH_HELD_RESPONSE (the client waits for it, so no other response is due).
 */
export class RpcRequestValidator {
  readonly #maxMessageBytes: number
  readonly #observer: RequestObserver | undefined
  readonly #cachedTensors: CachedTensorSource | undefined
  readonly #header = new Uint8Array(REQUEST_HEADER_BYTES)
  #headerFilled = 0
  #command = 0
  #payloadBytes = 0
  #payloadLeft = 0
  #helloSeen = false
  #failure: RpcTunnelError | undefined
  /** the SET_TENSOR_CACHED request being received: held back whole, never passed on as it is */
  #cachedRequest: Uint8Array | undefined
  /** the SET_TENSOR_HASH request being received: held back whole until the cache is asked */
  #hashRequest: Uint8Array | undefined
  readonly #hashAnswered: (() => void) | undefined

  constructor (maxMessageBytes: number, observer?: RequestObserver, cachedTensors?: CachedTensorSource, hashAnswered?: () => void) {
    if (!Number.isSafeInteger(maxMessageBytes) || maxMessageBytes < 1) {
      throw new RpcTunnelOptionsError(`the ggml-rpc message cap must be a positive whole number of bytes, got ${maxMessageBytes}`)
    }
    this.#maxMessageBytes = maxMessageBytes
    this.#observer = observer
    this.#cachedTensors = cachedTensors
    this.#hashAnswered = hashAnswered
  }

  /**
   * True while a request is partly received, or the session's HELLO is still to come:
   * the times when a silent client is stalling, not idle between commands.
   */
  get midMessage (): boolean {
    return !this.#helloSeen || this.#headerFilled > 0 || this.#payloadLeft > 0
  }

  /** Validates the next chunk of the session; returns the parts that may be forwarded, in order. */
  push (chunk: Uint8Array): Uint8Array[] {
    if (this.#failure !== undefined) throw this.#failure
    try {
      return this.#push(chunk)
    } catch (err) {
      if (err instanceof RpcTunnelError) this.#failure = err
      throw err
    }
  }

  #push (chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = []
    let offset = 0
    while (offset < chunk.length) {
      if (this.#payloadLeft > 0) {
        const n = Math.min(this.#payloadLeft, chunk.length - offset)
        const part = chunk.subarray(offset, offset + n)
        if (this.#cachedRequest !== undefined) {
          this.#cachedRequest.set(part, this.#payloadBytes - this.#payloadLeft)
        } else if (this.#hashRequest !== undefined) {
          this.#hashRequest.set(part, this.#payloadBytes - this.#payloadLeft)
          this.#observer?.requestPayload?.(part)
        } else {
          out.push(part)
          this.#observer?.requestPayload?.(part)
        }
        offset += n
        this.#payloadLeft -= n
        if (this.#payloadLeft === 0) this.#endRequest(out)
        continue
      }
      const n = Math.min(REQUEST_HEADER_BYTES - this.#headerFilled, chunk.length - offset)
      this.#header.set(chunk.subarray(offset, offset + n), this.#headerFilled)
      // The command byte is judged as soon as it arrives, before its size.
      if (this.#headerFilled === 0) this.#checkCommand(this.#header[0])
      this.#headerFilled += n
      offset += n
      if (this.#headerFilled === REQUEST_HEADER_BYTES) this.#acceptHeader(out)
    }
    return out
  }

  #checkCommand (command: number): void {
    if (!this.#helloSeen && command !== RpcCommand.HELLO) throw new RpcHelloExpectedError(command)
    if (command === TunnelCommand.SET_TENSOR_CACHED) {
      if (this.#cachedTensors === undefined) throw new UnknownRpcCommandError(command, 'this end of the tunnel keeps no tensor cache')
      return
    }
    if (!isKnownCommand(command)) throw new UnknownRpcCommandError(command, `this llama.cpp release defines commands 0 to ${COMMAND_NAMES.length - 1}`)
    if (this.#helloSeen && command === RpcCommand.HELLO) throw new UnknownRpcCommandError(command, 'HELLO may only open a session')
  }

  #acceptHeader (out: Uint8Array[]): void {
    const command = this.#header[0]
    const size = new DataView(this.#header.buffer).getBigUint64(1, true)
    const name = commandName(command)
    const cached = command === TunnelCommand.SET_TENSOR_CACHED
    const fixed = cached ? SET_TENSOR_CACHED_BYTES : FIXED_REQUEST_BYTES.get(command)
    if (fixed !== undefined && size !== BigInt(fixed)) throw new RpcRequestSizeError(name, size, fixed)
    if (size > BigInt(this.#maxMessageBytes)) throw new RpcMessageTooLargeError(name, size, this.#maxMessageBytes)
    this.#helloSeen = true
    this.#headerFilled = 0
    this.#command = command
    this.#payloadBytes = Number(size)
    this.#payloadLeft = this.#payloadBytes
    this.#cachedRequest = cached ? new Uint8Array(this.#payloadBytes) : undefined
    const hashed = command === RpcCommand.SET_TENSOR_HASH && this.#cachedTensors?.setByHash !== undefined && this.#hashAnswered !== undefined
    this.#hashRequest = hashed ? new Uint8Array(this.#payloadBytes) : undefined
    this.#observer?.requestStart(command, this.#payloadBytes)
    // A copy: the header buffer is reused for the next request.
    if (!cached && !hashed) out.push(this.#header.slice())
    if (this.#payloadLeft === 0) this.#endRequest(out)
  }

  #endRequest (out: Uint8Array[]): void {
    const request = this.#cachedRequest
    if (request !== undefined) {
      this.#cachedRequest = undefined
      // The SET_TENSOR it stands for is held to the same cap as one that crossed the tunnel whole.
      const payloadBytes = SET_TENSOR_DATA_OFFSET + Number(new DataView(request.buffer).getBigUint64(SET_TENSOR_DATA_OFFSET, true))
      if (payloadBytes > this.#maxMessageBytes) throw new RpcMessageTooLargeError(commandName(RpcCommand.SET_TENSOR), BigInt(payloadBytes), this.#maxMessageBytes)
      out.push(...(this.#cachedTensors as CachedTensorSource).expand(request))
    }
    const hashRequest = this.#hashRequest
    this.#hashRequest = undefined
    const held = hashRequest === undefined ? undefined : this.#heldByHash(hashRequest)
    if (hashRequest !== undefined && held === undefined) out.push(encodeRequestHeader(RpcCommand.SET_TENSOR_HASH, hashRequest.byteLength), hashRequest)
    if (held !== undefined) out.push(...held)
    this.#observer?.requestEnd(this.#command, this.#payloadBytes)
    if (held !== undefined) this.#hashAnswered?.()
  }

  // The SET_TENSOR that the cache can make of a SET_TENSOR_HASH, held to the same cap as one that crossed whole.
  #heldByHash (request: Uint8Array): Uint8Array[] | undefined {
    const parts = this.#cachedTensors?.setByHash?.(request)
    if (parts === undefined) return undefined
    const bytes = parts.reduce((sum, part) => sum + part.byteLength, 0) - REQUEST_HEADER_BYTES
    return bytes <= this.#maxMessageBytes ? parts : undefined
  }
}
