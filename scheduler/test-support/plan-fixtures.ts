// Fixtures shared by the planners' unit tests.
import assert from 'node:assert/strict'
import type { ModelFacts, NodeOffer, PlanInput, StagePlan } from '../types.js'

export const MiB = 1024 * 1024

/** A 28-layer model: 100 MiB per layer, 1024 KV values per token per layer (2 KiB per token in f16). */
export function model (overrides: Partial<ModelFacts> = {}): ModelFacts {
  const layerCount = overrides.layerCount ?? 28
  return {
    layerCount,
    layerWeightBytes: new Array<number>(layerCount).fill(100 * MiB),
    layerLargestTensorBytes: new Array<number>(layerCount).fill(30 * MiB),
    embeddingBytes: 250 * MiB,
    outputHeadBytes: 250 * MiB,
    tiedEmbeddings: false,
    outsideLayerTensors: ['token_embd.weight', 'output_norm.weight', 'output.weight'],
    kvValuesPerTokenPerLayer: new Array<number>(layerCount).fill(1024),
    embeddingLength: 2048,
    vocabSize: 32000,
    largestTensorBytes: 250 * MiB,
    ...overrides
  }
}

export const node = (id: string, offeredMiB: number, speed = 1): NodeOffer => ({ id, offeredBytes: offeredMiB * MiB, speed })

/** A 4096-token context and a coordinator offering 16,000 MiB at speed 1. */
export function input (workers: NodeOffer[], overrides: Partial<PlanInput> = {}): PlanInput {
  return { model: model(), coordinator: node('coordinator', 16_000), workers, contextSize: 4096, ...overrides }
}

/** The plan as `node:first+count` per stage. */
export const ranges = (plan: StagePlan): string[] => plan.stages.map(stage => `${stage.nodeId}:${stage.firstLayer}+${stage.layerCount}`)

export function assertWithinOffers (plan: StagePlan): void {
  for (const stage of plan.stages) assert.ok(stage.memory.totalBytes <= stage.offeredBytes, `${stage.nodeId} holds ${stage.memory.totalBytes} of ${stage.offeredBytes}`)
}
