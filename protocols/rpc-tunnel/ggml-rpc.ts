/**
 * The ggml-rpc wire protocol of the llama.cpp release every node runs (protocol 6.0.0), as
 * ggml/src/ggml-rpc/ggml-rpc.cpp defines it:
 *   request  (client -> rpc-server): command u8 | payload size u64 LE | payload
 *   response (rpc-server -> client): payload size u64 LE | payload, only for some commands
 * The server serves one connection at a time, requires HELLO first, and answers a second
 * HELLO or an unknown command by dropping the connection.
 */

/** ggml-rpc command bytes (enum rpc_cmd). */
export const RpcCommand = {
  ALLOC_BUFFER: 0,
  GET_ALIGNMENT: 1,
  GET_MAX_SIZE: 2,
  BUFFER_GET_BASE: 3,
  FREE_BUFFER: 4,
  BUFFER_CLEAR: 5,
  SET_TENSOR: 6,
  SET_TENSOR_HASH: 7,
  GET_TENSOR: 8,
  COPY_TENSOR: 9,
  GRAPH_COMPUTE: 10,
  GET_DEVICE_MEMORY: 11,
  INIT_TENSOR: 12,
  GET_ALLOC_SIZE: 13,
  HELLO: 14,
  DEVICE_COUNT: 15,
  GRAPH_RECOMPUTE: 16,
  MEMSET_TENSOR: 17
} as const

/**
 * Commands only the tunnel speaks, numbered far above ggml-rpc's own. The coordinator's side
 * sends them in place of a ggml-rpc request; the worker bridge turns them back into that
 * request before rpc-server sees anything.
 */
export const TunnelCommand = {
  /** a SET_TENSOR whose data the worker holds in its tensor cache: rpc_tensor | offset u64 | data size u64 | sha256 of the data */
  SET_TENSOR_CACHED: 0x80
} as const

/** Bytes of a request header: command u8 and payload size u64. */
export const REQUEST_HEADER_BYTES = 9

/** Bytes of a response header: payload size u64. */
export const RESPONSE_HEADER_BYTES = 8

/** Lower-case command names, indexed by command byte (metric labels). */
export const COMMAND_NAMES: readonly string[] = Object.keys(RpcCommand).map(name => name.toLowerCase())

/** sizeof(rpc_tensor): the packed tensor description most requests carry. */
const RPC_TENSOR_BYTES = 296
/** A SET_TENSOR payload is rpc_tensor | offset u64 | data: this many bytes come before the data. */
export const SET_TENSOR_DATA_OFFSET = RPC_TENSOR_BYTES + 8
/** Bytes of the key that names a tensor's data in the tunnel's tensor cache (its sha256). */
export const TENSOR_KEY_BYTES = 32
/** SET_TENSOR_CACHED's payload: SET_TENSOR's rpc_tensor and offset, the data size u64, the key. */
export const SET_TENSOR_CACHED_BYTES = SET_TENSOR_DATA_OFFSET + 8 + TENSOR_KEY_BYTES

/**
 * llama.cpp's RPC client asks rpc-server for tensors larger than this by hash (SET_TENSOR_HASH)
 * before it sends them (HASH_THRESHOLD in ggml-rpc.cpp). llmesh runs rpc-server without its
 * cache, which would save every such SET_TENSOR, prompt activations included: the worker's
 * tensor cache answers for the weights it keeps, and rpc-server says "not held" to the rest.
 */
export const LLAMA_RPC_HASH_THRESHOLD_BYTES = 10 * 1024 * 1024
/** GGML_MAX_SRC */
const MAX_SRC = 10
/** RPC_CONN_CAPS_SIZE: the transport capabilities in HELLO */
const CONN_CAPS_BYTES = 24

/**
 * The exact payload size of every fixed-size request (the packed rpc_msg_*_req structs);
 * rpc-server drops a connection whose size differs. SET_TENSOR and GRAPH_COMPUTE are
 * variable and bounded by the tunnel's message cap instead.
 */
export const FIXED_REQUEST_BYTES: ReadonlyMap<number, number> = new Map([
  [RpcCommand.ALLOC_BUFFER, 4 + 8],
  [RpcCommand.GET_ALIGNMENT, 4],
  [RpcCommand.GET_MAX_SIZE, 4],
  [RpcCommand.BUFFER_GET_BASE, 8],
  [RpcCommand.FREE_BUFFER, 8],
  [RpcCommand.BUFFER_CLEAR, 8 + 1],
  [RpcCommand.SET_TENSOR_HASH, RPC_TENSOR_BYTES + 8 + 8],
  [RpcCommand.GET_TENSOR, RPC_TENSOR_BYTES + 8 + 8],
  [RpcCommand.COPY_TENSOR, 2 * RPC_TENSOR_BYTES],
  [RpcCommand.GET_DEVICE_MEMORY, 4],
  [RpcCommand.INIT_TENSOR, RPC_TENSOR_BYTES],
  [RpcCommand.GET_ALLOC_SIZE, 4 + RPC_TENSOR_BYTES * (1 + MAX_SRC)],
  [RpcCommand.HELLO, CONN_CAPS_BYTES],
  [RpcCommand.DEVICE_COUNT, 0],
  [RpcCommand.GRAPH_RECOMPUTE, 4],
  [RpcCommand.MEMSET_TENSOR, RPC_TENSOR_BYTES + 8 + 8 + 1]
])

/** Commands that rpc-server answers with a response message; the others are one-way. */
export const COMMANDS_WITH_RESPONSE: ReadonlySet<number> = new Set([
  RpcCommand.HELLO,
  RpcCommand.DEVICE_COUNT,
  RpcCommand.ALLOC_BUFFER,
  RpcCommand.GET_ALLOC_SIZE,
  RpcCommand.GET_ALIGNMENT,
  RpcCommand.GET_MAX_SIZE,
  RpcCommand.BUFFER_GET_BASE,
  RpcCommand.SET_TENSOR_HASH,
  RpcCommand.GET_TENSOR,
  RpcCommand.COPY_TENSOR,
  RpcCommand.GET_DEVICE_MEMORY
])

/** True for a command byte that this protocol version defines. */
export function isKnownCommand (command: number): boolean {
  return command < COMMAND_NAMES.length
}

/** The metric label of a ggml-rpc or tunnel command byte. */
export function commandName (command: number): string {
  return command === TunnelCommand.SET_TENSOR_CACHED ? 'set_tensor_cached' : COMMAND_NAMES[command] ?? `command_${command}`
}

/**
 * The u64 LE at `offset` of `bytes` (a message's size): as a number where it is exact, and
 * Infinity beyond Number.MAX_SAFE_INTEGER. Read byte by byte, without a DataView or BigInt:
 * it runs for every message of every token.
 */
export function readSize (bytes: Uint8Array, offset: number): number {
  const low = bytes[offset] + bytes[offset + 1] * 0x100 + bytes[offset + 2] * 0x10000 + bytes[offset + 3] * 0x1000000
  const high = bytes[offset + 4] + bytes[offset + 5] * 0x100 + bytes[offset + 6] * 0x10000 + bytes[offset + 7] * 0x1000000
  return high > 0x1fffff ? Infinity : high * 0x100000000 + low
}

/** The u64 LE at `offset` of `bytes`, exactly (for error messages about sizes readSize cannot hold). */
export function readSizeExact (bytes: Uint8Array, offset: number): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(offset, true)
}

/** The 9-byte header of a request: command u8 | payload size u64 LE. */
export function encodeRequestHeader (command: number, payloadBytes: number): Uint8Array {
  const header = new Uint8Array(REQUEST_HEADER_BYTES)
  header[0] = command
  new DataView(header.buffer).setBigUint64(1, BigInt(payloadBytes), true)
  return header
}
