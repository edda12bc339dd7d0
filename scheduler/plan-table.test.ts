import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { renderPlanTable } from './plan-table.js'
import { parseStages, planFromStages } from './stages-override.js'
import type { PlanInput } from './types.js'

const MiB = 1024 * 1024
const input: PlanInput = {
  model: {
    layerCount: 8,
    layerWeightBytes: new Array<number>(8).fill(10 * MiB),
    layerLargestTensorBytes: new Array<number>(8).fill(4 * MiB),
    embeddingBytes: 4 * MiB,
    outputHeadBytes: 4 * MiB,
    tiedEmbeddings: false,
    outsideLayerTensors: ['token_embd.weight', 'output_norm.weight', 'output.weight'],
    kvValuesPerTokenPerLayer: new Array<number>(8).fill(512),
    embeddingLength: 512,
    vocabSize: 1000,
    largestTensorBytes: 4 * MiB
  },
  coordinator: { id: 'coord', offeredBytes: 1024 * MiB, speed: 1 },
  workers: [{ id: 'peer-a', offeredBytes: 1024 * MiB, speed: 1 }, { id: 'peer-b', offeredBytes: 1024 * MiB, speed: 1 }],
  contextSize: 1024
}

describe('renderPlanTable', () => {
  it('shows one aligned row per stage with its layers and memory, and the unused workers', () => {
    const table = renderPlanTable(planFromStages(input, parseStages('0,1-7')))
    const lines = table.split('\n')
    assert.match(lines[0], /^stage\s+node\s+role\s+layers\s+weights\s+KV cache\s+embd\+head\s+compute\s+total\s+offered$/)
    assert.match(lines[1], /^0\s+coord\s+coordinator\s+0\s+10\.0 MiB\s+1\.0 MiB\s+8\.0 MiB\s/)
    assert.match(lines[2], /^1\s+peer-a\s+worker\s+1-7\s+70\.0 MiB\s+7\.0 MiB\s+-\s/)
    // Columns line up: each row's "layers" cell starts where the header's does.
    const column = lines[0].indexOf('layers')
    assert.equal(lines[1].slice(column, column + 2), '0 ')
    assert.equal(lines[2].slice(column, column + 3), '1-7')
    assert.match(table, /unused workers \(no layers\): peer-b/)
    assert.match(table, /privacy on/)
  })
})
