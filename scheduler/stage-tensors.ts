import { InvalidPlanInputError } from './errors.js'
import { kvCacheCells, MICRO_BATCH_TOKENS } from './memory.js'
import type { ModelFacts, Stage, StagePlan } from './types.js'

// Micro-batch inputs travel as float32; the attention mask is f16 under flash attention, so
// counting it at 4 bytes per value leaves room for a build that keeps it f32.
const ACTIVATION_VALUE_BYTES = 4

/**
 * Bytes of the largest tensor llama-server sends the node of `stage`: the largest weight
 * tensor of its layers (uploaded whole when the model loads) or a micro-batch input, where
 * the attention mask grows with the context and the hidden state with the embedding width.
 */
export function largestStageTensorBytes (model: ModelFacts, plan: StagePlan, stage: Stage): number {
  if (model.layerLargestTensorBytes.length !== model.layerCount) {
    throw new InvalidPlanInputError(`the model facts list ${model.layerLargestTensorBytes.length} layerLargestTensorBytes entries for ${model.layerCount} layers; they must list one per layer`)
  }
  if (stage.firstLayer + stage.layerCount > model.layerCount) {
    throw new InvalidPlanInputError(`stage of ${stage.nodeId} ends at layer ${stage.firstLayer + stage.layerCount - 1}, beyond the model's ${model.layerCount} layers`)
  }
  let weights = 0
  for (let layer = stage.firstLayer; layer < stage.firstLayer + stage.layerCount; layer++) {
    weights = Math.max(weights, model.layerLargestTensorBytes[layer])
  }
  const mask = kvCacheCells(plan.contextSize) * MICRO_BATCH_TOKENS * ACTIVATION_VALUE_BYTES
  const hiddenState = model.embeddingLength * MICRO_BATCH_TOKENS * ACTIVATION_VALUE_BYTES
  return Math.max(weights, mask, hiddenState)
}
