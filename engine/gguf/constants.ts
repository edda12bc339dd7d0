/** The four bytes every GGUF file starts with ("GGUF" read as ASCII). */
export const GGUF_MAGIC = Buffer.from('GGUF', 'ascii')

/** The GGUF version this project writes. */
export const GGUF_VERSION = 3

/** GGUF versions the reader accepts: version 2 has the same layout as 3; version 1 used 32-bit counts. */
export const GGUF_READABLE_VERSIONS: readonly number[] = [2, 3]

/** Alignment of the tensor data when a file has no `general.alignment` key. */
export const GGUF_DEFAULT_ALIGNMENT = 32

/** Metadata key that overrides the data alignment. */
export const GGUF_KEY_ALIGNMENT = 'general.alignment'

/** ggml keeps tensor names in a fixed 64-byte buffer, terminator included. */
export const GGML_MAX_NAME_LENGTH = 63

/** ggml tensors have at most four dimensions. */
export const GGML_MAX_DIMS = 4

/** Type tags of GGUF metadata values (gguf.h `enum gguf_type`). */
export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12
}

/** `general.file_type` values (llama.h `enum llama_ftype`) for the types this project writes. */
export enum LlamaFileType {
  ALL_F32 = 0,
  MOSTLY_F16 = 1,
  MOSTLY_Q8_0 = 7
}

/** Version of the quantisation formats, stored as `general.quantization_version`. */
export const GGML_QUANTIZATION_VERSION = 2
