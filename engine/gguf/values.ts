import { GgufValueType } from './constants.js'

/** Value types that an array may hold: GGUF has no arrays of arrays. */
export type GgufItemType = Exclude<GgufValueType, GgufValueType.ARRAY>

/** A typed GGUF metadata value: the type tag decides how the value is stored. */
export type GgufValue =
  | { type: GgufValueType.UINT8 | GgufValueType.INT8 | GgufValueType.UINT16 | GgufValueType.INT16 | GgufValueType.UINT32 | GgufValueType.INT32 | GgufValueType.FLOAT32 | GgufValueType.FLOAT64, value: number }
  | { type: GgufValueType.UINT64 | GgufValueType.INT64, value: bigint }
  | { type: GgufValueType.BOOL, value: boolean }
  | { type: GgufValueType.STRING, value: string }
  | { type: GgufValueType.ARRAY, itemType: GgufItemType, value: ReadonlyArray<number | bigint | boolean | string> }

/** A uint32 metadata value. */
export function u32 (value: number): GgufValue {
  return { type: GgufValueType.UINT32, value }
}

/** An int32 metadata value. */
export function i32 (value: number): GgufValue {
  return { type: GgufValueType.INT32, value }
}

/** A float32 metadata value. */
export function f32 (value: number): GgufValue {
  return { type: GgufValueType.FLOAT32, value }
}

/** A boolean metadata value. */
export function bool (value: boolean): GgufValue {
  return { type: GgufValueType.BOOL, value }
}

/** A string metadata value. */
export function str (value: string): GgufValue {
  return { type: GgufValueType.STRING, value }
}

/** An array of strings. */
export function strArray (value: readonly string[]): GgufValue {
  return { type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value }
}

/** An array of int32 values. */
export function i32Array (value: readonly number[]): GgufValue {
  return { type: GgufValueType.ARRAY, itemType: GgufValueType.INT32, value }
}
