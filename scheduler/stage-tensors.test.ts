import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { InvalidPlanInputError } from './errors.js'
import { largestStageTensorBytes } from './stage-tensors.js'
import { parseStages, planFromStages } from './stages-override.js'
import type { ModelFacts, PlanInput } from './types.js'

const MiB = 1024 * 1024
// Layer 5 holds the model's largest layer tensor; the others are 1 MiB at most.
const model: ModelFacts = {
  layerCount: 8,
  layerWeightBytes: new Array<number>(8).fill(10 * MiB),
  layerLargestTensorBytes: [1, 1, 1, 1, 1, 9, 1, 1].map(n => n * MiB),
  embeddingBytes: 4 * MiB,
  outputHeadBytes: 4 * MiB,
  tiedEmbeddings: false,
  outsideLayerTensors: ['token_embd.weight', 'output_norm.weight', 'output.weight'],
  kvValuesPerTokenPerLayer: new Array<number>(8).fill(512),
  embeddingLength: 512,
  vocabSize: 1000,
  largestTensorBytes: 9 * MiB
}
const nodes = { coordinator: { id: 'coord', offeredBytes: 4096 * MiB, speed: 1 }, workers: [{ id: 'a', offeredBytes: 4096 * MiB, speed: 1 }, { id: 'b', offeredBytes: 4096 * MiB, speed: 1 }] }

function plan (contextSize: number, stages = '0-1,2-4,5-7'): ReturnType<typeof planFromStages> {
  const input: PlanInput = { model, ...nodes, contextSize }
  return planFromStages(input, parseStages(stages))
}

describe('largestStageTensorBytes', () => {
  it('is the largest weight tensor among the stage\'s own layers, not the model\'s', () => {
    const p = plan(256)
    const [, a, b] = p.stages
    // Micro-batch inputs at 256 tokens of context: mask 256 x 512 x 4 = 512 KiB, hidden state 512 x 512 x 4 = 1 MiB.
    assert.equal(largestStageTensorBytes(model, p, a), 1 * MiB)
    assert.equal(largestStageTensorBytes(model, p, b), 9 * MiB)
  })

  it('grows with the context once the attention mask of a micro-batch outweighs the weights', () => {
    const p = plan(16384)
    // 16384 KV cells x 512 tokens x 4 bytes.
    assert.equal(largestStageTensorBytes(model, p, p.stages[1]), 32 * MiB)
    assert.equal(largestStageTensorBytes(model, p, p.stages[2]), 32 * MiB)
  })

  it('refuses model facts without one largest tensor per layer', () => {
    const p = plan(256)
    assert.throws(() => largestStageTensorBytes({ ...model, layerLargestTensorBytes: [1] }, p, p.stages[1]), InvalidPlanInputError)
  })
})
