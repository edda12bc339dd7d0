// Public surface of the GGUF module: read a model's layout, write a model as a stream.
export { GGUF_VERSION, GgufValueType, LlamaFileType, GGML_QUANTIZATION_VERSION } from './constants.js'
export * from './errors.js'
export { GgmlType, ggmlTypeName, tensorByteSize } from './tensor-types.js'
export { type GgufValue, type GgufItemType, u32, i32, f32, bool, str, strArray, i32Array } from './values.js'
export { readGgufInfo, type GgufInfo, type GgufTensorInfo } from './reader.js'
export { writeGgufFile, planGgufLayout, type GgufContent, type GgufTensorSource, type GgufLayout, type WriteGgufOptions } from './writer.js'
