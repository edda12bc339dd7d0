import { readSize, RESPONSE_HEADER_BYTES } from './ggml-rpc.js'

/**
 * Follows the rpc-server -> client byte stream (size u64 LE | payload, per response) to
 * tell where each response ends; it never changes or holds back a byte.
 */
export class RpcResponseReader {
  readonly #onResponse: (payloadBytes: number) => void
  readonly #header = new Uint8Array(RESPONSE_HEADER_BYTES)
  #headerFilled = 0
  #payloadBytes = 0
  #payloadLeft = 0

  /** `onResponse` is called once per complete response, with its payload size. */
  constructor (onResponse: (payloadBytes: number) => void) {
    this.#onResponse = onResponse
  }

  /** True while a response is partly received. */
  get midMessage (): boolean {
    return this.#headerFilled > 0 || this.#payloadLeft > 0
  }

  /** Reads the next chunk of responses. */
  push (chunk: Uint8Array): void {
    let offset = 0
    while (offset < chunk.length) {
      if (this.#payloadLeft > 0) {
        const n = Math.min(this.#payloadLeft, chunk.length - offset)
        offset += n
        this.#payloadLeft -= n
        if (this.#payloadLeft === 0) this.#onResponse(this.#payloadBytes)
        continue
      }
      if (this.#headerFilled === 0 && chunk.length - offset >= RESPONSE_HEADER_BYTES) {
        this.#startPayload(readSize(chunk, offset))
        offset += RESPONSE_HEADER_BYTES
        continue
      }
      const n = Math.min(RESPONSE_HEADER_BYTES - this.#headerFilled, chunk.length - offset)
      for (let i = 0; i < n; i++) this.#header[this.#headerFilled + i] = chunk[offset + i]
      this.#headerFilled += n
      offset += n
      if (this.#headerFilled < RESPONSE_HEADER_BYTES) continue
      this.#headerFilled = 0
      this.#startPayload(readSize(this.#header, 0))
    }
  }

  // rpc-server is local and trusted: a size beyond 2^53 would only mis-time, never mis-route.
  #startPayload (payloadBytes: number): void {
    this.#payloadBytes = payloadBytes
    this.#payloadLeft = payloadBytes
    if (payloadBytes === 0) this.#onResponse(0)
  }
}
