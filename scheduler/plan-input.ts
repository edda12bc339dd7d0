import { InvalidPlanInputError } from './errors.js'
import type { KvCacheType, ModelFacts, NodeOffer, PlanInput, PrivacyMode } from './types.js'

/** A PlanInput with defaults filled in and every value checked. */
export interface CheckedPlanInput {
  model: ModelFacts
  /** the coordinator first, then the workers in pipeline order */
  nodes: readonly NodeOffer[]
  contextSize: number
  parallel: number
  kvCacheType: KvCacheType
  privacy: PrivacyMode
  /** layers the coordinator must keep: 1 under privacy on, 0 under privacy off */
  minCoordinatorLayers: number
}

const KV_CACHE_TYPES: readonly KvCacheType[] = ['f16', 'bf16', 'f32']
const PRIVACY_MODES: readonly PrivacyMode[] = ['on', 'off']

/** Checks a PlanInput and fills in its defaults; throws InvalidPlanInputError on the first bad value. */
export function checkPlanInput (input: PlanInput): CheckedPlanInput {
  const { model } = input
  requireCount(model.layerCount, 'the model\'s layer count', 1)
  requirePerLayer(model.layerWeightBytes, model.layerCount, 'layerWeightBytes')
  requirePerLayer(model.kvValuesPerTokenPerLayer, model.layerCount, 'kvValuesPerTokenPerLayer')
  for (const key of ['embeddingBytes', 'outputHeadBytes', 'embeddingLength', 'vocabSize', 'largestTensorBytes'] as const) {
    requireCount(model[key], `the model's ${key}`, 0)
  }
  if (!Array.isArray(model.outsideLayerTensors) || model.outsideLayerTensors.some(name => typeof name !== 'string' || name === '')) {
    throw new InvalidPlanInputError('the model facts must list the names of the tensors outside the layers (outsideLayerTensors), each a non-empty string')
  }
  const parallel = input.parallel ?? 1
  checkSlots(input.contextSize, parallel)
  const kvCacheType = input.kvCacheType ?? 'f16'
  if (!KV_CACHE_TYPES.includes(kvCacheType)) throw new InvalidPlanInputError(`KV-cache type "${kvCacheType}" is not supported; use one of ${KV_CACHE_TYPES.join(', ')}`)
  const privacy = input.privacy ?? 'on'
  if (!PRIVACY_MODES.includes(privacy)) throw new InvalidPlanInputError(`privacy mode "${privacy}" is not known; use "on" or "off"`)

  const nodes = [input.coordinator, ...input.workers]
  const ids = new Set<string>()
  for (const node of nodes) {
    if (typeof node.id !== 'string' || node.id === '') throw new InvalidPlanInputError('every member needs a non-empty id')
    if (ids.has(node.id)) throw new InvalidPlanInputError(`member ${node.id} is listed twice; list each member once`)
    ids.add(node.id)
    requireCount(node.offeredBytes, `the memory offered by ${node.id}`, 0)
    if (!Number.isFinite(node.speed) || node.speed <= 0) throw new InvalidPlanInputError(`member ${node.id} has speed ${node.speed}; a measured speed must be a number above 0`)
  }
  return { model, nodes, contextSize: input.contextSize, parallel, kvCacheType, privacy, minCoordinatorLayers: privacy === 'on' ? 1 : 0 }
}

/** Checks that `parallel` slots can share a context of `contextSize` tokens; throws InvalidPlanInputError if not. */
export function checkSlots (contextSize: number, parallel: number): void {
  requireCount(contextSize, 'the context size', 1)
  requireCount(parallel, 'the number of parallel slots', 1)
  if (parallel > contextSize) {
    throw new InvalidPlanInputError(`${parallel} parallel slots cannot share a context of ${contextSize} tokens; use a context of at least one token per slot`)
  }
}

function requireCount (value: number, what: string, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) throw new InvalidPlanInputError(`${what} must be a whole number of at least ${min}, got ${value}`)
}

function requirePerLayer (values: readonly number[], layerCount: number, what: string): void {
  if (values.length !== layerCount) throw new InvalidPlanInputError(`the model facts list ${values.length} ${what} entries for ${layerCount} layers; they must list one per layer`)
  values.forEach((value, layer) => requireCount(value, `${what} of layer ${layer}`, 0))
}
