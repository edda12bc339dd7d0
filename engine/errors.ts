/** The model file is missing, unreadable, truncated or not a GGUF model. */
export class ModelFileError extends Error {
  static readonly code = 'ERR_MODEL_FILE'
  readonly code = ModelFileError.code
  override readonly name = 'ModelFileError'
}

/** Options given to an engine or a child process make no sense (no tokens to generate, a bad socket path, ...). */
export class EngineOptionsError extends Error {
  static readonly code = 'ERR_ENGINE_OPTIONS'
  readonly code = EngineOptionsError.code
  override readonly name = 'EngineOptionsError'
}

/** The engine was used after `dispose()`. */
export class EngineDisposedError extends Error {
  static readonly code = 'ERR_ENGINE_DISPOSED'
  readonly code = EngineDisposedError.code
  override readonly name = 'EngineDisposedError'
}

/** A supervised child process (llama-server, rpc-server) could not start or exited before it was ready. */
export class ChildProcessStartError extends Error {
  static readonly code = 'ERR_CHILD_PROCESS_START'
  readonly code = ChildProcessStartError.code
  override readonly name = 'ChildProcessStartError'

  /** `output` holds the child's last stderr lines, for diagnosis */
  constructor (message: string, readonly output: readonly string[] = []) {
    super(message)
  }
}

/** llama-server answered a request with an error (a broken connection is an EngineLostError). */
export class LlamaServerRequestError extends Error {
  static readonly code = 'ERR_LLAMA_SERVER_REQUEST'
  readonly code = LlamaServerRequestError.code
  override readonly name = 'LlamaServerRequestError'

  /** `status` is the HTTP status, undefined when the connection failed */
  constructor (message: string, readonly status?: number) {
    super(message)
  }
}

/** No engine can serve right now: the model is loading, or the cluster is re-planning or lacks memory. */
export class EngineUnavailableError extends Error {
  static readonly code = 'ERR_ENGINE_UNAVAILABLE'
  readonly code = EngineUnavailableError.code
  override readonly name = 'EngineUnavailableError'

  /** `retryAfterSeconds` is how long a client should wait before trying again */
  constructor (message: string, readonly retryAfterSeconds: number) {
    super(message)
  }
}

/**
 * The engine went away during a request: its process exited, or the connection to it broke.
 * Unlike a refused request, this is no fault of the input: another engine can take the work over.
 */
export class EngineLostError extends Error {
  static readonly code = 'ERR_ENGINE_LOST'
  readonly code = EngineLostError.code
  override readonly name = 'EngineLostError'
}

/** A C library of llmesh's own (engine/c-library.ts) could not be compiled. */
export class CLibraryBuildError extends Error {
  static readonly code = 'ERR_C_LIBRARY_BUILD'
  readonly code = CLibraryBuildError.code
  override readonly name = 'CLibraryBuildError'
}

/** The library that turns core dumps off for llmesh's processes cannot be built or loaded. */
export class ProcessHardeningError extends Error {
  static readonly code = 'ERR_PROCESS_HARDENING'
  readonly code = ProcessHardeningError.code
  override readonly name = 'ProcessHardeningError'
}

/**
 * One replica group's engine went away during a request while other groups still serve: the
 * generation continues on another group of the same engine (see GroupRouter).
 */
export class GroupLostError extends EngineLostError {}
