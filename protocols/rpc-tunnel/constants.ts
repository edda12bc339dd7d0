export const PROTOCOL_PREFIX = 'llmesh'
export const PROTOCOL_NAME = 'rpc'
export const PROTOCOL_VERSION = '1.0.0'

/** Version 2 frames the ggml-rpc bytes and carries the tunnel's own flow control (credit-stream.ts). */
export const TUNNEL_PROTOCOL_VERSION = '2.0.0'

/** The tunnel's libp2p protocol id, `/llmesh/rpc/2.0.0`. */
export const RPC_TUNNEL_PROTOCOL = `/${PROTOCOL_PREFIX}/${PROTOCOL_NAME}/${TUNNEL_PROTOCOL_VERSION}`

/**
 * Added to the largest tensor for the message cap. A SET_TENSOR carries one tensor plus its
 * 296-byte description and offset; a GRAPH_COMPUTE carries the graph (8 bytes per node and
 * 296 per tensor: about 5 MB for llama.cpp's largest graphs of 8192 nodes). 32 MiB covers both.
 */
export const MESSAGE_MARGIN_BYTES = 32 * 1024 * 1024

/**
 * Coordinator -> worker, before llama-server connects for a plan: the largest ggml-rpc request
 * the worker is to let through from that coordinator (`messageCapFor` of the stage's largest tensor).
 */
export const RPC_CAP_PROTOCOL = `/${PROTOCOL_PREFIX}/${PROTOCOL_NAME}-cap/${PROTOCOL_VERSION}`

/** Message types of the cap exchange: the cap, and the worker's answer. */
export const RpcCapMessageType = {
  /** coordinator -> worker: {maxMessageBytes, channel?: {sha256}}, the cap and the coordinator's data channel certificate (data-channel.ts) */
  cap: 1,
  /** worker -> coordinator: {maxMessageBytes, cachedTensors: [[sha256 hex, bytes], ...], channel?: {port, sha256}}, the cap now in force, what its tensor cache holds and where its data channel is */
  accepted: 2,
  /** worker -> coordinator: {reason} */
  refused: 3
} as const

/** A cap message is a few dozen bytes of JSON. */
export const RPC_CAP_MAX_PAYLOAD_BYTES = 1024

/** The most tensors a worker lists in its answer (about 80 bytes each), most recently used first. */
export const MAX_LISTED_CACHED_TENSORS = 50_000

/** The worker's answer lists its cached tensors. */
export const RPC_CAP_ANSWER_MAX_PAYLOAD_BYTES = 8 * 1024 * 1024

/**
 * The cap a worker applies to a coordinator that has not told it one: enough for the
 * protocol's small commands and small models, never a whole large tensor.
 */
export const DEFAULT_MESSAGE_CAP_BYTES = MESSAGE_MARGIN_BYTES

/** How long a request may stall part-way (or a session wait for its HELLO) before the stream is closed. */
export const IDLE_READ_TIMEOUT_MS = 30_000

/**
 * Coordinator: how long a worker may send nothing while llama-server waits for its answer
 * before the worker counts as failed. It covers the longest legitimate compute (a full batch
 * of prompt tokens through a worker's layers on a slow CPU), so it is generous.
 */
export const RESPONSE_TIMEOUT_MS = 30_000

/** llama-server keeps one connection per rpc-server; a few more allow a reconnect to overlap. */
export const MAX_INBOUND_STREAMS = 4
export const MAX_OUTBOUND_STREAMS = 4

/** How long opening a tunnel stream to a worker may take. */
export const OPEN_STREAM_TIMEOUT_MS = 10_000
