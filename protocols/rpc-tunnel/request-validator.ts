import { COMMAND_NAMES, commandName, encodeRequestHeader, FIXED_REQUEST_BYTES, isKnownCommand, readSize, readSizeExact, REQUEST_HEADER_BYTES, RpcCommand, SET_TENSOR_CACHED_BYTES, SET_TENSOR_DATA_OFFSET, TunnelCommand } from './ggml-rpc.js'
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

/** Adds `chunk`'s bytes from `from` to `to` to `out`, as `chunk` itself where that is all of it. */
function passRun (out: Uint8Array[], chunk: Uint8Array, from: number, to: number): void {
  if (to > from) out.push(from === 0 && to === chunk.length ? chunk : chunk.subarray(from, to))
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

  // Bytes that pass unchanged go out as runs of `chunk` itself (in a decode step, usually the
  // whole chunk): this runs for every chunk of every token, where each view and copy costs.
  #push (chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = []
    const end = chunk.length
    let offset = 0
    /** where the bytes start that pass as they are and are not in `out` yet */
    let run = 0
    while (offset < end) {
      if (this.#payloadLeft > 0) {
        const n = Math.min(this.#payloadLeft, end - offset)
        const held = this.#cachedRequest ?? this.#hashRequest
        if (held !== undefined) {
          passRun(out, chunk, run, offset)
          const part = chunk.subarray(offset, offset + n)
          held.set(part, this.#payloadBytes - this.#payloadLeft)
          if (held === this.#hashRequest) this.#observer?.requestPayload?.(part)
          run = offset + n
        } else if (this.#observer?.requestPayload !== undefined) {
          this.#observer.requestPayload(chunk.subarray(offset, offset + n))
        }
        offset += n
        this.#payloadLeft -= n
        if (this.#payloadLeft === 0) this.#endRequest(out)
        continue
      }
      if (this.#headerFilled === 0 && end - offset >= REQUEST_HEADER_BYTES) {
        // A whole header: judged where it is, and passed on with the run unless it is held back.
        this.#checkCommand(chunk[offset])
        if (!this.#acceptHeader(chunk, offset)) {
          passRun(out, chunk, run, offset)
          run = offset + REQUEST_HEADER_BYTES
        }
        offset += REQUEST_HEADER_BYTES
        if (this.#payloadLeft === 0) this.#endRequest(out)
        continue
      }
      // A header split across chunks is held back until it is whole.
      passRun(out, chunk, run, offset)
      const n = Math.min(REQUEST_HEADER_BYTES - this.#headerFilled, end - offset)
      for (let i = 0; i < n; i++) this.#header[this.#headerFilled + i] = chunk[offset + i]
      // The command byte is judged as soon as it arrives, before its size.
      if (this.#headerFilled === 0) this.#checkCommand(this.#header[0])
      this.#headerFilled += n
      offset += n
      run = offset
      if (this.#headerFilled < REQUEST_HEADER_BYTES) continue
      this.#headerFilled = 0
      // A copy: the header buffer is reused for the next request.
      if (this.#acceptHeader(this.#header, 0)) out.push(this.#header.slice())
      if (this.#payloadLeft === 0) this.#endRequest(out)
    }
    passRun(out, chunk, run, end)
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

  /** Checks and takes the request header at `offset` of `bytes`; true when it passes on as it is, false when it is held back. */
  #acceptHeader (bytes: Uint8Array, offset: number): boolean {
    const command = bytes[offset]
    const size = readSize(bytes, offset + 1)
    const cached = command === TunnelCommand.SET_TENSOR_CACHED
    const fixed = cached ? SET_TENSOR_CACHED_BYTES : FIXED_REQUEST_BYTES.get(command)
    if (fixed !== undefined && size !== fixed) throw new RpcRequestSizeError(commandName(command), readSizeExact(bytes, offset + 1), fixed)
    if (size > this.#maxMessageBytes) throw new RpcMessageTooLargeError(commandName(command), readSizeExact(bytes, offset + 1), this.#maxMessageBytes)
    this.#helloSeen = true
    this.#command = command
    this.#payloadBytes = size
    this.#payloadLeft = size
    this.#cachedRequest = cached ? new Uint8Array(size) : undefined
    const hashed = command === RpcCommand.SET_TENSOR_HASH && this.#cachedTensors?.setByHash !== undefined && this.#hashAnswered !== undefined
    this.#hashRequest = hashed ? new Uint8Array(size) : undefined
    this.#observer?.requestStart(command, size)
    return !cached && !hashed
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
