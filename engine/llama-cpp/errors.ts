/** The llama.cpp tools (llama-server, ggml-rpc-server) have not been built on this machine. */
export class LlamaCppToolsMissingError extends Error {
  static readonly code = 'ERR_LLAMA_CPP_TOOLS_MISSING'
  readonly code = LlamaCppToolsMissingError.code
  override readonly name = 'LlamaCppToolsMissingError'
}

/** Something the build needs (cmake, a C++ compiler, git, a GPU toolkit) is not installed. */
export class BuildPrerequisiteError extends Error {
  static readonly code = 'ERR_BUILD_PREREQUISITE'
  readonly code = BuildPrerequisiteError.code
  override readonly name = 'BuildPrerequisiteError'
}

/** A build step (extracting the source, cmake configure or compile) failed. */
export class LlamaCppBuildError extends Error {
  static readonly code = 'ERR_LLAMA_CPP_BUILD'
  readonly code = LlamaCppBuildError.code
  override readonly name = 'LlamaCppBuildError'

  constructor (message: string, readonly logPath?: string) {
    super(message)
  }
}
