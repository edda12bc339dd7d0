import { TensorShapeError } from './errors.js'

/** ggml tensor element types (ggml.h `enum ggml_type`); the numbers are stored in GGUF files. */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
  Q2_0 = 42
}

/** How a ggml type packs values: `blockSize` values take `blockBytes` bytes. */
export interface GgmlTypeLayout {
  blockSize: number
  blockBytes: number
}

const QK_K = 256

// Mirrors GGML_QUANT_SIZES in llama.cpp's gguf-py/gguf/constants.py.
const LAYOUTS: ReadonlyMap<GgmlType, GgmlTypeLayout> = new Map([
  [GgmlType.F32, { blockSize: 1, blockBytes: 4 }],
  [GgmlType.F16, { blockSize: 1, blockBytes: 2 }],
  [GgmlType.Q4_0, { blockSize: 32, blockBytes: 2 + 16 }],
  [GgmlType.Q4_1, { blockSize: 32, blockBytes: 2 + 2 + 16 }],
  [GgmlType.Q5_0, { blockSize: 32, blockBytes: 2 + 4 + 16 }],
  [GgmlType.Q5_1, { blockSize: 32, blockBytes: 2 + 2 + 4 + 16 }],
  [GgmlType.Q8_0, { blockSize: 32, blockBytes: 2 + 32 }],
  [GgmlType.Q8_1, { blockSize: 32, blockBytes: 4 + 4 + 32 }],
  [GgmlType.Q2_K, { blockSize: QK_K, blockBytes: 2 + 2 + QK_K / 16 + QK_K / 4 }],
  [GgmlType.Q3_K, { blockSize: QK_K, blockBytes: 2 + QK_K / 4 + QK_K / 8 + 12 }],
  [GgmlType.Q4_K, { blockSize: QK_K, blockBytes: 2 + 2 + QK_K / 2 + 12 }],
  [GgmlType.Q5_K, { blockSize: QK_K, blockBytes: 2 + 2 + QK_K / 2 + QK_K / 8 + 12 }],
  [GgmlType.Q6_K, { blockSize: QK_K, blockBytes: 2 + QK_K / 2 + QK_K / 4 + QK_K / 16 }],
  [GgmlType.Q8_K, { blockSize: QK_K, blockBytes: 4 + QK_K + QK_K / 8 }],
  [GgmlType.IQ2_XXS, { blockSize: QK_K, blockBytes: 2 + QK_K / 4 }],
  [GgmlType.IQ2_XS, { blockSize: QK_K, blockBytes: 2 + QK_K / 4 + QK_K / 32 }],
  [GgmlType.IQ3_XXS, { blockSize: QK_K, blockBytes: 2 + QK_K / 4 + QK_K / 8 }],
  [GgmlType.IQ1_S, { blockSize: QK_K, blockBytes: 2 + QK_K / 8 + QK_K / 16 }],
  [GgmlType.IQ4_NL, { blockSize: 32, blockBytes: 2 + 16 }],
  [GgmlType.IQ3_S, { blockSize: QK_K, blockBytes: 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4 }],
  [GgmlType.IQ2_S, { blockSize: QK_K, blockBytes: 2 + QK_K / 4 + QK_K / 16 }],
  [GgmlType.IQ4_XS, { blockSize: QK_K, blockBytes: 2 + 2 + QK_K / 2 + QK_K / 64 }],
  [GgmlType.I8, { blockSize: 1, blockBytes: 1 }],
  [GgmlType.I16, { blockSize: 1, blockBytes: 2 }],
  [GgmlType.I32, { blockSize: 1, blockBytes: 4 }],
  [GgmlType.I64, { blockSize: 1, blockBytes: 8 }],
  [GgmlType.F64, { blockSize: 1, blockBytes: 8 }],
  [GgmlType.IQ1_M, { blockSize: QK_K, blockBytes: QK_K / 8 + QK_K / 16 + QK_K / 32 }],
  [GgmlType.BF16, { blockSize: 1, blockBytes: 2 }],
  [GgmlType.TQ1_0, { blockSize: QK_K, blockBytes: 2 + 4 * 13 }],
  [GgmlType.TQ2_0, { blockSize: QK_K, blockBytes: 2 + 64 }],
  [GgmlType.MXFP4, { blockSize: 32, blockBytes: 1 + 16 }],
  [GgmlType.NVFP4, { blockSize: 64, blockBytes: 4 + 32 }],
  [GgmlType.Q1_0, { blockSize: 128, blockBytes: 2 + 16 }],
  [GgmlType.Q2_0, { blockSize: 64, blockBytes: 2 + 16 }]
])

/** The block layout of a ggml type, or undefined for a number that names no type llama.cpp knows. */
export function ggmlTypeLayout (type: number): GgmlTypeLayout | undefined {
  return LAYOUTS.get(type)
}

/** The lower-case name llama.cpp prints for a ggml type, e.g. "q8_0". */
export function ggmlTypeName (type: GgmlType): string {
  return GgmlType[type].toLowerCase()
}

/**
 * Bytes a tensor of this type and shape (ggml order, ne0 first) takes in a GGUF file, unpadded.
 * Throws TensorShapeError when a row cannot be split into whole blocks of the type.
 */
export function tensorByteSize (name: string, type: GgmlType, dims: readonly number[]): number {
  const layout = ggmlTypeLayout(type)
  if (layout == null) throw new TensorShapeError(`tensor '${name}' has ggml type ${type}, which llama.cpp does not know`)
  const rowLength = dims[0] ?? 1
  if (rowLength % layout.blockSize !== 0) {
    throw new TensorShapeError(`tensor '${name}' has rows of ${rowLength} values, but ${ggmlTypeName(type)} stores rows in blocks of ${layout.blockSize}; use a row length that is a multiple of ${layout.blockSize}`)
  }
  const elements = dims.reduce((product, dim) => product * dim, 1)
  return (elements / layout.blockSize) * layout.blockBytes
}
