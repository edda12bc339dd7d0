/** Base class of every error about reading or writing a GGUF file. */
export class GgufError extends Error {
  override name = 'GgufError'
}

/** The file does not start with the GGUF magic bytes: it is not a GGUF model. */
export class NotGgufError extends GgufError {
  override name = 'NotGgufError'
}

/** The file is GGUF, but of a version (or byte order) this project cannot read. */
export class UnsupportedGgufVersionError extends GgufError {
  override name = 'UnsupportedGgufVersionError'
}

/** The file ends before the data its header describes: an interrupted download or copy. */
export class TruncatedGgufError extends GgufError {
  override name = 'TruncatedGgufError'
}

/** A tensor uses a ggml type number that the pinned llama.cpp does not know. */
export class UnknownTensorTypeError extends GgufError {
  override name = 'UnknownTensorTypeError'
}

/** A tensor's shape does not fit its type (rows not made of whole blocks, too many dimensions). */
export class TensorShapeError extends GgufError {
  override name = 'TensorShapeError'
}

/** The file is GGUF but its structure breaks the format's rules (duplicate keys, misplaced tensors, ...). */
export class InvalidGgufError extends GgufError {
  override name = 'InvalidGgufError'
}

/** Writing was cancelled through its AbortSignal; the partial file was removed. */
export class GgufWriteAbortedError extends GgufError {
  override name = 'GgufWriteAbortedError'
}

/** Writing a GGUF file failed (disk full, missing folder, ...); the partial file was removed. */
export class GgufWriteError extends GgufError {
  override name = 'GgufWriteError'
}

/** The model file does not exist or cannot be opened. */
export class GgufFileError extends GgufError {
  override name = 'GgufFileError'
}
