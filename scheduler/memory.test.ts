import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { computeBufferBytes, kvCacheCells } from './memory.js'
import type { ModelFacts } from './types.js'

const MiB = 1024 * 1024

function model (embeddingLength: number): ModelFacts {
  return {
    layerCount: 4,
    layerWeightBytes: [0, 0, 0, 0],
    layerLargestTensorBytes: [0, 0, 0, 0],
    embeddingBytes: 0,
    outputHeadBytes: 0,
    tiedEmbeddings: false,
    outsideLayerTensors: ['token_embd.weight', 'output_norm.weight', 'output.weight'],
    kvValuesPerTokenPerLayer: [0, 0, 0, 0],
    embeddingLength,
    vocabSize: 1000,
    largestTensorBytes: 0
  }
}

describe('kvCacheCells', () => {
  it('rounds the context up to llama.cpp\'s 256-cell padding', () => {
    assert.equal(kvCacheCells(1), 256)
    assert.equal(kvCacheCells(256), 256)
    assert.equal(kvCacheCells(4000), 4096)
  })
})

describe('computeBufferBytes', () => {
  // Largest per-device compute buffer llama-server --verbose reported on this llama.cpp
  // (synthetic llama, ff = 2 x embd, default micro-batch, flash attention on).
  const measured = [
    { embd: 512, ctx: 2048, bytes: 10.01 * MiB },
    { embd: 512, ctx: 4096, bytes: 13.01 * MiB },
    { embd: 512, ctx: 16384, bytes: 24.01 * MiB },
    { embd: 1024, ctx: 4096, bytes: 20.01 * MiB },
    { embd: 1024, ctx: 16384, bytes: 32.01 * MiB }
  ]
  for (const { embd, ctx, bytes } of measured) {
    it(`covers the ${(bytes / MiB).toFixed(2)} MiB measured for embd ${embd}, context ${ctx}, with room to spare`, () => {
      const margin = computeBufferBytes({ model: model(embd), contextSize: ctx, parallel: 1, kvCacheType: 'f16' }, false)
      assert.ok(margin >= 1.5 * bytes, `margin ${margin} for measured ${bytes}`)
    })
  }

  it('adds the logits of a micro-batch on the node holding the output head', () => {
    const sizing = { model: model(512), contextSize: 4096, parallel: 2, kvCacheType: 'f16' as const }
    assert.equal(computeBufferBytes(sizing, true) - computeBufferBytes(sizing, false), (512 + 2) * 1000 * 4)
  })
})
