/**
 * Typed errors of the ggml-rpc tunnel. Each carries a short `reason`, used as a metric
 * label, so operators can tell a refused peer from an oversized message.
 */
export class RpcTunnelError extends Error {
  readonly reason: string
  constructor (message: string, reason: string) {
    super(message)
    this.name = 'RpcTunnelError'
    this.reason = reason
  }
}

/** The first request of a session is not HELLO: not an llama.cpp RPC client of this version. */
export class RpcHelloExpectedError extends RpcTunnelError {
  constructor (command: number) {
    super(`the first ggml-rpc command must be HELLO (14), got ${command}; the client does not speak this llama.cpp RPC protocol`, 'hello-expected')
    this.name = 'RpcHelloExpectedError'
  }
}

/** A command byte this llama.cpp release does not define, or a HELLO after the first. */
export class UnknownRpcCommandError extends RpcTunnelError {
  constructor (command: number, why: string) {
    super(`ggml-rpc command ${command} is refused: ${why}`, 'unknown-command')
    this.name = 'UnknownRpcCommandError'
  }
}

/** A request announces more payload than the tunnel's cap (largest tensor plus margin). */
export class RpcMessageTooLargeError extends RpcTunnelError {
  constructor (command: string, size: bigint, max: number) {
    super(`ggml-rpc ${command} announces ${size} bytes, more than the ${max}-byte cap derived from the model plan`, 'too-large')
    this.name = 'RpcMessageTooLargeError'
  }
}

/** A fixed-size request announces a size other than its struct's. */
export class RpcRequestSizeError extends RpcTunnelError {
  constructor (command: string, size: bigint, expected: number) {
    super(`ggml-rpc ${command} must carry exactly ${expected} bytes, got ${size}`, 'bad-size')
    this.name = 'RpcRequestSizeError'
  }
}

/** A message stalled mid-way for longer than the idle read timeout. */
export class RpcIdleReadTimeoutError extends RpcTunnelError {
  constructor (timeoutMs: number) {
    super(`a ggml-rpc message stalled for more than ${timeoutMs} ms; the tunnel stream was closed`, 'idle-timeout')
    this.name = 'RpcIdleReadTimeoutError'
  }
}

/** Coordinator: a worker stopped answering while llama-server waited for it. */
export class RpcWorkerStalledError extends RpcTunnelError {
  constructor (timeoutMs: number) {
    super(`the worker sent nothing for ${timeoutMs} ms while llama-server waited for its answer; the tunnel stream was closed`, 'worker-stalled')
    this.name = 'RpcWorkerStalledError'
  }
}

/** rpc-server sent a response that no request asked for. */
export class UnexpectedRpcResponseError extends RpcTunnelError {
  constructor () {
    super('rpc-server sent a response that no request asked for; the tunnel stream was closed', 'unexpected-response')
    this.name = 'UnexpectedRpcResponseError'
  }
}

/** The peer that opened a tunnel stream is not the cluster's coordinator. */
export class RpcTunnelRefusedError extends RpcTunnelError {
  constructor (peer: string) {
    super(`peer ${peer} is not the cluster's coordinator; only the coordinator may open ggml-rpc tunnel streams`, 'not-coordinator')
    this.name = 'RpcTunnelRefusedError'
  }
}

/** The worker did not accept the message cap of a plan. */
export class RpcMessageCapRefusedError extends RpcTunnelError {
  constructor (worker: string, reason: string) {
    super(`worker ${worker} refused the plan's ggml-rpc message cap: ${reason}`, 'cap-refused')
    this.name = 'RpcMessageCapRefusedError'
  }
}

/** This worker's rpc-server is not running or refused the bridge's connection. */
export class RpcServerUnavailableError extends RpcTunnelError {
  constructor (detail: string) {
    super(`this worker's rpc-server is not reachable (${detail}); the tunnel stream was closed`, 'rpc-server-unavailable')
    this.name = 'RpcServerUnavailableError'
  }
}

/** A tunnel option is out of range. */
export class RpcTunnelOptionsError extends RpcTunnelError {
  constructor (message: string) {
    super(message, 'options')
    this.name = 'RpcTunnelOptionsError'
  }
}

/** Worker: a SET_TENSOR_CACHED names data that this worker's tensor cache does not hold (any more). */
export class RpcTensorCacheMissError extends RpcTunnelError {
  constructor (key: string, detail: string) {
    super(`the tensor cache holds no data ${key} (${detail}); the tunnel stream was closed, and the next engine start sends that tensor whole`, 'tensor-cache-miss')
    this.name = 'RpcTensorCacheMissError'
  }
}

/** Coordinator: the worker ended a session llama-server still used (its rpc-server died, or its bridge refused a request). */
export class RpcSessionEndedByWorkerError extends RpcTunnelError {
  constructor (how: string) {
    super(`the worker ended a ggml-rpc session that llama-server was still using (${how})`, 'ended-by-worker')
    this.name = 'RpcSessionEndedByWorkerError'
  }
}

/** A tunnel stream's frame is malformed (wrong magic, version, type or size): the peer does not speak this tunnel protocol. */
export class RpcTunnelFrameError extends RpcTunnelError {
  constructor (why: string) {
    super(`a tunnel frame was refused: ${why}`, 'bad-frame')
    this.name = 'RpcTunnelFrameError'
  }
}

/** The remote sent more data than this side granted it, or granted credit for data it never received. */
export class RpcCreditExceededError extends RpcTunnelError {
  constructor (what: string) {
    super(`the tunnel's flow control was violated: ${what}`, 'credit-exceeded')
    this.name = 'RpcCreditExceededError'
  }
}

/** Coordinator: a worker's data channel could not be used; its sessions go over libp2p streams instead. */
export class RpcDataChannelError extends RpcTunnelError {
  constructor (where: string, why: string) {
    super(`the tunnel's data channel at ${where} cannot be used: ${why}`, 'data-channel')
    this.name = 'RpcDataChannelError'
  }
}

/** The local connection to llama-server or rpc-server was reset (the process died, or dropped it). */
export class LocalConnectionResetError extends Error {
  constructor (detail: string) {
    super(`the local RPC connection was reset (${detail})`)
    this.name = 'LocalConnectionResetError'
  }
}

/**
 * A socket of the native addon (native-socket/) failed: `code` is the errno name (ECONNRESET,
 * ...), ETIMEDOUT for a TLS handshake too slow, or ERR_TLS.
 */
export class NativeSocketError extends Error {
  readonly code: string
  constructor (message: string, code: string) {
    super(message)
    this.name = 'NativeSocketError'
    this.code = code
  }
}
