import { REQUEST_HEADER_BYTES, RESPONSE_HEADER_BYTES } from '../ggml-rpc.js'

/**
 * Bytes of one ggml-rpc request: the command byte, the payload's length as a little-endian u64
 * (or `announced`, to lie about it), then the payload (zeroes when given as a byte count).
 */
export function rpcRequest (command: number, payload: Uint8Array | number, announced?: bigint): Uint8Array {
  const body = typeof payload === 'number' ? new Uint8Array(payload) : payload
  const bytes = new Uint8Array(REQUEST_HEADER_BYTES + body.length)
  bytes[0] = command
  new DataView(bytes.buffer).setBigUint64(1, announced ?? BigInt(body.length), true)
  bytes.set(body, REQUEST_HEADER_BYTES)
  return bytes
}

/** Bytes of one ggml-rpc response: the payload's length as a little-endian u64, then `payloadBytes` bytes of `fill`. */
export function rpcResponse (payloadBytes: number, fill = 0): Uint8Array {
  const bytes = new Uint8Array(RESPONSE_HEADER_BYTES + payloadBytes).fill(fill)
  new DataView(bytes.buffer).setBigUint64(0, BigInt(payloadBytes), true)
  return bytes
}
