import { type GgufInfo, type GgufValue, GgufValueType, readGgufInfo } from './gguf/index.js'
import { ModelFileError } from './errors.js'
import type { ModelFacts } from '../scheduler/index.js'

const LAYER_TENSOR = /^blk\.(\d+)\./

/**
 * Reads the facts the scheduler plans with (layer sizes, embedding, output head, KV values per
 * token) from a GGUF model's header, without loading its weights. Throws a GgufError for a
 * file that is not valid GGUF and ModelFileError for one that lacks what a layer split needs.
 */
export async function readModelFacts (path: string): Promise<ModelFacts> {
  return modelFactsFromGguf(await readGgufInfo(path), path)
}

/** The scheduler's ModelFacts for an already-read GGUF header (see readModelFacts). */
export function modelFactsFromGguf (info: GgufInfo, path: string): ModelFacts {
  const metadata = new MetadataReader(info, path)
  const architecture = metadata.string('general.architecture')
  const layerCount = metadata.integer(`${architecture}.block_count`)
  const embeddingLength = metadata.integer(`${architecture}.embedding_length`)
  const headCounts = metadata.perLayer(`${architecture}.attention.head_count`, layerCount)
  const kvHeadCounts = metadata.has(`${architecture}.attention.head_count_kv`) ? metadata.perLayer(`${architecture}.attention.head_count_kv`, layerCount) : headCounts
  // llama.cpp's defaults when the head sizes are not stored: the hidden size split over the heads.
  const defaultHeadSize = headCounts[0] > 0 ? Math.floor(embeddingLength / headCounts[0]) : 0
  const keyLength = metadata.has(`${architecture}.attention.key_length`) ? metadata.integer(`${architecture}.attention.key_length`) : defaultHeadSize
  const valueLength = metadata.has(`${architecture}.attention.value_length`) ? metadata.integer(`${architecture}.attention.value_length`) : defaultHeadSize

  const layerWeightBytes: number[] = new Array<number>(layerCount).fill(0)
  const layerLargestTensorBytes: number[] = new Array<number>(layerCount).fill(0)
  const byName = new Map(info.tensors.map(tensor => [tensor.name, tensor]))
  for (const tensor of info.tensors) {
    const match = LAYER_TENSOR.exec(tensor.name)
    if (match == null) continue
    const layer = Number(match[1])
    if (layer >= layerCount) throw new ModelFileError(`${path} has tensor ${tensor.name} but its metadata says ${architecture}.block_count is ${layerCount}; the file is inconsistent, convert the model again`)
    layerWeightBytes[layer] += tensor.byteSize
    layerLargestTensorBytes[layer] = Math.max(layerLargestTensorBytes[layer], tensor.byteSize)
  }
  const embedding = byName.get('token_embd.weight')
  if (embedding == null) throw new ModelFileError(`${path} has no token_embd.weight tensor, so llmesh cannot split it by layers; use a decoder-only transformer model`)
  const outsideLayers = info.tensors.filter(tensor => !LAYER_TENSOR.test(tensor.name))
  return {
    layerCount,
    layerWeightBytes,
    layerLargestTensorBytes,
    embeddingBytes: embedding.byteSize,
    // Everything outside the layers but the embedding: the head and its norms and biases, which the coordinator keeps.
    outputHeadBytes: outsideLayers.reduce((sum, tensor) => sum + (tensor === embedding ? 0 : tensor.byteSize), 0),
    tiedEmbeddings: !byName.has('output.weight'),
    outsideLayerTensors: outsideLayers.map(tensor => tensor.name),
    kvValuesPerTokenPerLayer: kvHeadCounts.map(heads => heads * (keyLength + valueLength)),
    embeddingLength,
    // ne1 of the embedding matrix is the vocabulary: more reliable than the token list, which some files omit.
    vocabSize: embedding.dims[1] ?? 1,
    largestTensorBytes: Math.max(...info.tensors.map(tensor => tensor.byteSize))
  }
}

class MetadataReader {
  constructor (private readonly info: GgufInfo, private readonly path: string) {}

  has (key: string): boolean {
    return this.info.metadata.has(key)
  }

  string (key: string): string {
    const value = this.get(key)
    if (value.type !== GgufValueType.STRING) throw this.wrongType(key, 'a string')
    return value.value
  }

  integer (key: string): number {
    const value = this.get(key)
    const number = toCount(value.type === GgufValueType.ARRAY ? undefined : value.value)
    if (number == null) throw this.wrongType(key, 'a whole number')
    return number
  }

  /** A per-layer count: GGUF stores it either once for all layers or as an array with one entry per layer. */
  perLayer (key: string, layerCount: number): number[] {
    const value = this.get(key)
    if (value.type !== GgufValueType.ARRAY) return new Array<number>(layerCount).fill(this.integer(key))
    const counts = value.value.map(toCount)
    if (counts.length !== layerCount || counts.some(count => count == null)) throw this.wrongType(key, `a whole number or ${layerCount} of them (one per layer)`)
    return counts as number[]
  }

  private get (key: string): GgufValue {
    const value = this.info.metadata.get(key)
    if (value == null) throw new ModelFileError(`${this.path} has no '${key}' metadata, which llmesh needs to split the model by layers; convert the model with a current llama.cpp`)
    return value
  }

  private wrongType (key: string, expected: string): ModelFileError {
    return new ModelFileError(`${this.path} stores '${key}' as something other than ${expected}; the file is damaged or not a llama.cpp model`)
  }
}

function toCount (value: number | bigint | boolean | string | undefined): number | undefined {
  const number = typeof value === 'bigint' ? Number(value) : value
  return typeof number === 'number' && Number.isSafeInteger(number) && number >= 0 ? number : undefined
}
