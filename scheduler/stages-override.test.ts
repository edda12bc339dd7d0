import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { parseStages, planFromStages } from './stages-override.js'
import { InvalidStagesError, PlanDoesNotFitError, PrivacyViolationError } from './errors.js'
import type { ModelFacts, PlanInput } from './types.js'

const MiB = 1024 * 1024

const model: ModelFacts = {
  layerCount: 28,
  layerWeightBytes: new Array<number>(28).fill(100 * MiB),
  layerLargestTensorBytes: new Array<number>(28).fill(30 * MiB),
  embeddingBytes: 250 * MiB,
  outputHeadBytes: 250 * MiB,
  tiedEmbeddings: false,
  outsideLayerTensors: ['token_embd.weight', 'output_norm.weight', 'output.weight'],
  kvValuesPerTokenPerLayer: new Array<number>(28).fill(1024),
  embeddingLength: 2048,
  vocabSize: 32000,
  largestTensorBytes: 250 * MiB
}

const input: PlanInput = {
  model,
  coordinator: { id: 'coordinator', offeredBytes: 16_000 * MiB, speed: 1 },
  workers: [{ id: 'w1', offeredBytes: 16_000 * MiB, speed: 1 }, { id: 'w2', offeredBytes: 1500 * MiB, speed: 1 }],
  contextSize: 4096
}

describe('parseStages', () => {
  it('reads ranges, single layers and none, one entry per node', () => {
    assert.deepEqual(parseStages('0-9,10-27'), [{ first: 0, last: 9 }, { first: 10, last: 27 }])
    assert.deepEqual(parseStages('none, 0-26 ,27'), [null, { first: 0, last: 26 }, { first: 27, last: 27 }])
  })

  it('rejects text that is not a range list', () => {
    for (const bad of ['', '0-9,,10-27', 'a-b', '0-9;10-27', '-3', '1.5-2', '0-9-12']) {
      assert.throws(() => parseStages(bad), InvalidStagesError, bad)
    }
    assert.throws(() => parseStages('9-0'), /ends before it starts/)
  })
})

describe('planFromStages', () => {
  it('builds the plan the override describes, with each node\'s memory', () => {
    const plan = planFromStages(input, parseStages('0-9,10-20,21-27'))
    assert.deepEqual(plan.stages.map(s => [s.nodeId, s.firstLayer, s.layerCount]), [['coordinator', 0, 10], ['w1', 10, 11], ['w2', 21, 7]])
    assert.equal(plan.stages[2].memory.weightBytes, 7 * 100 * MiB)
    assert.deepEqual(plan.unusedWorkers, [])
  })

  it('leaves workers without a range unused', () => {
    const plan = planFromStages(input, parseStages('0-20,none,21-27'))
    assert.deepEqual(plan.unusedWorkers, ['w1'])
    const shorter = planFromStages(input, parseStages('0-9,10-27'))
    assert.deepEqual(shorter.unusedWorkers, ['w2'])
  })

  it('rejects gaps, overlaps, ranges past the last layer and incomplete cover', () => {
    assert.throws(() => planFromStages(input, parseStages('0-9,11-27')), /layers 10-10 are in no range/)
    assert.throws(() => planFromStages(input, parseStages('0-9,9-27')), /layer 9 is in two ranges/)
    assert.throws(() => planFromStages(input, parseStages('1-27')), /layers 0-0 are in no range/)
    assert.throws(() => planFromStages(input, parseStages('0-9,10-28')), /past the model's last layer 27/)
    assert.throws(() => planFromStages(input, parseStages('0-9,10-20')), /layers 21-27 are in no range/)
    assert.throws(() => planFromStages(input, parseStages('0,1,2,3-27')), /4 ranges but there are only 3 nodes/)
  })

  it('keeps layer 0 on the coordinator unless privacy is off', () => {
    assert.throws(() => planFromStages(input, parseStages('none,0-27')), PrivacyViolationError)
    const open = planFromStages({ ...input, privacy: 'off' }, parseStages('none,0-27'))
    assert.equal(open.stages[0].layerCount, 0)
    assert.equal(open.stages[1].layerCount, 28)
  })

  it('refuses an override that overloads a node, saying how many bytes are missing there', () => {
    // w2 offers 1500 MiB; 18 layers need 18 x 108 MiB plus its compute margin.
    assert.throws(() => planFromStages(input, parseStages('0-4,5-9,10-27')), (err: unknown) => {
      assert.ok(err instanceof PlanDoesNotFitError)
      assert.equal(err.shortfalls.length, 1)
      const [shortfall] = err.shortfalls
      assert.equal(shortfall.nodeId, 'w2')
      assert.equal(shortfall.what, 'layers 10-27')
      assert.equal(shortfall.missingBytes, shortfall.neededBytes - 1500 * MiB)
      assert.equal(err.missingBytes, shortfall.missingBytes)
      assert.match(err.message, new RegExp(`w2 needs .* for layers 10-27 but offers .*\\(${1500 * MiB} bytes\\), .*\\(${shortfall.missingBytes} bytes\\) missing`))
      return true
    })
  })
})
