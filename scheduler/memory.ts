import type { KvCacheType, ModelFacts, StageMemory } from './types.js'

/** What memory sizes depend on besides the layer range. */
export interface SizingInput {
  model: ModelFacts
  contextSize: number
  parallel: number
  kvCacheType: KvCacheType
}

/** Tokens per micro-batch; rendered as llama-server `--ubatch-size` so the margin below holds. */
export const MICRO_BATCH_TOKENS = 512

// llama.cpp rounds the context up to a multiple of 256 cells (llama-context.cpp, GGML_PAD(n_ctx, 256)).
const KV_CELL_PADDING = 256

const KV_VALUE_BYTES: Readonly<Record<KvCacheType, number>> = { f32: 4, f16: 2, bf16: 2 }

const COMPUTE_OVERHEAD_BYTES = 32 * 1024 * 1024

/** KV-cache cells llama-server allocates for `-c contextSize` with `--kv-unified` (shared by all slots). */
export function kvCacheCells (contextSize: number): number {
  return Math.ceil(contextSize / KV_CELL_PADDING) * KV_CELL_PADDING
}

/** Bytes one layer needs on the node that runs it: its weights plus its KV cache. */
export function layerBytes (sizing: SizingInput, layer: number): { weightBytes: number, kvCacheBytes: number } {
  const { model, contextSize, kvCacheType } = sizing
  const kvCacheBytes = kvCacheCells(contextSize) * model.kvValuesPerTokenPerLayer[layer] * KV_VALUE_BYTES[kvCacheType]
  return { weightBytes: model.layerWeightBytes[layer], kvCacheBytes }
}

/**
 * The margin kept on every node for llama.cpp's compute buffers, which it sizes from the
 * graph at load time, so the planner cannot know them exactly. With flash attention (which
 * the rendered arguments turn on) a device's buffer grows with the micro-batch times the
 * attention mask (one f16 per KV cell) and the hidden activations. Measured with
 * llama-server --verbose on this llama.cpp (synthetic llama, ff = 2 x embd, 512-token
 * micro-batch): 10 MiB (embd 512, ctx 2048), 13 (512, 4096), 24 (512, 16384),
 * 20 (1024, 4096), 32 MiB (1024, 16384), i.e. about 512 x (2 x cells + 32 x embd) bytes.
 * The margin doubles both terms (wider feed-forward layers, other architectures) and adds
 * 32 MiB of fixed overhead. The node holding the output head also keeps float32 logits for
 * a whole micro-batch and one row per slot.
 */
export function computeBufferBytes (sizing: SizingInput, holdsOutputHead: boolean): number {
  const { model, contextSize, parallel } = sizing
  const perToken = kvCacheCells(contextSize) * 4 + model.embeddingLength * 4 * 16
  const logits = holdsOutputHead ? (MICRO_BATCH_TOKENS + parallel) * model.vocabSize * 4 : 0
  return COMPUTE_OVERHEAD_BYTES + MICRO_BATCH_TOKENS * perToken + logits
}

/** Memory one node needs for a layer range; the coordinator also holds the embedding and output head. */
export function stageMemory (sizing: SizingInput, firstLayer: number, layerCount: number, isCoordinator: boolean): StageMemory {
  let weightBytes = 0
  let kvCacheBytes = 0
  for (let layer = firstLayer; layer < firstLayer + layerCount; layer++) {
    const bytes = layerBytes(sizing, layer)
    weightBytes += bytes.weightBytes
    kvCacheBytes += bytes.kvCacheBytes
  }
  const embeddingAndHeadBytes = isCoordinator ? sizing.model.embeddingBytes + sizing.model.outputHeadBytes : 0
  const computeBytes = computeBufferBytes(sizing, isCoordinator)
  return { weightBytes, kvCacheBytes, embeddingAndHeadBytes, computeBytes, totalBytes: weightBytes + kvCacheBytes + embeddingAndHeadBytes + computeBytes }
}
