import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { planStages } from './plan-stages.js'
import { planFromStages } from './stages-override.js'
import { computeBufferBytes } from './memory.js'
import { InvalidPlanInputError, PlanDoesNotFitError } from './errors.js'
import { assertWithinOffers, input, MiB, model, node, ranges } from './test-support/plan-fixtures.js'
import type { ModelFacts, PlanInput, StageRange } from './types.js'

// The compute margin for the default context of these tests (4096 tokens, one slot, f16 cache).
const compute = (m: ModelFacts, holdsOutputHead: boolean): number => computeBufferBytes({ model: m, contextSize: 4096, parallel: 1, kvCacheType: 'f16' }, holdsOutputHead)

describe('planStages', () => {
  it('keeps every layer on the coordinator when there are no workers', () => {
    const plan = planStages(input([]))
    assert.deepEqual(ranges(plan), ['coordinator:0+28'])
    // 28 layers x 100 MiB, 28 x 1024 values x 4096 cells x 2 bytes, embedding + head, compute margin.
    const expected = 28 * 100 * MiB + 28 * 1024 * 4096 * 2 + 500 * MiB + compute(model(), true)
    assert.equal(plan.stages[0].memory.totalBytes, expected)
  })

  it('splits layers in proportion to speed among nodes with room', () => {
    const plan = planStages(input([node('fast', 16_000, 2), node('slow', 16_000, 1)]))
    assert.deepEqual(ranges(plan), ['coordinator:0+7', 'fast:7+14', 'slow:21+7'])
    assertWithinOffers(plan)
  })

  it('shares equal speeds evenly and the ranges are contiguous and complete', () => {
    const plan = planStages(input([node('a', 16_000), node('b', 16_000)], { model: model({ layerCount: 16 }) }))
    assert.deepEqual(plan.stages.map(stage => stage.layerCount).sort(), [5, 5, 6])
    let next = 0
    for (const stage of plan.stages) {
      assert.equal(stage.firstLayer, next)
      next += stage.layerCount
    }
    assert.equal(next, 16)
  })

  it('moves layers from a fast node with little memory to slower nodes (heterogeneous nodes)', () => {
    // The fast worker's speed share would be 14 layers, but 1 GiB holds fewer after its compute margin.
    const plan = planStages(input([node('fast-small', 1024, 2), node('slow-big', 16_000, 1)]))
    const fast = plan.stages.find(stage => stage.nodeId === 'fast-small')
    const fitsInOneGiB = Math.floor((1024 * MiB - compute(model(), false)) / (100 * MiB + 1024 * 4096 * 2))
    assert.ok(fitsInOneGiB < 14)
    assert.equal(fast?.layerCount, fitsInOneGiB)
    assert.equal(plan.stages.reduce((sum, stage) => sum + stage.layerCount, 0), 28)
    assert.ok(plan.stages[0].layerCount >= 1)
    assertWithinOffers(plan)
  })

  it('fills tight memory exactly: a plan that uses the last byte still fits', () => {
    const m = model({ layerCount: 4 })
    const perLayer = 100 * MiB + 1024 * 4096 * 2
    const coordinatorNeeds = 2 * perLayer + 500 * MiB + compute(m, true)
    const workerNeeds = 2 * perLayer + compute(m, false)
    const tight = { model: m, coordinator: { id: 'coordinator', offeredBytes: coordinatorNeeds, speed: 1 }, workers: [{ id: 'w', offeredBytes: workerNeeds, speed: 1 }], contextSize: 4096 }
    assert.deepEqual(ranges(planStages(tight)), ['coordinator:0+2', 'w:2+2'])
    // One byte less on the worker pushes a layer back to the coordinator, which has no room either.
    const short = { ...tight, workers: [{ id: 'w', offeredBytes: workerNeeds - 1, speed: 1 }] }
    assert.throws(() => planStages(short), (err: unknown) => {
      assert.ok(err instanceof PlanDoesNotFitError)
      assert.equal(err.missingBytes, 1)
      assert.match(err.message, /layers? 3/)
      return true
    })
  })

  it('refuses a model too big for the cluster and says how many bytes are missing', () => {
    const perLayer = 100 * MiB + 1024 * 4096 * 2
    const worker = node('w', 1000)
    const coordinator = node('coordinator', 2000)
    let thrown: unknown
    try {
      planStages({ ...input([worker]), coordinator })
    } catch (err) {
      thrown = err
    }
    assert.ok(thrown instanceof PlanDoesNotFitError)
    const coordinatorLayers = Math.floor((2000 * MiB - 500 * MiB - compute(model(), true)) / perLayer)
    const workerLayers = Math.floor((1000 * MiB - compute(model(), false)) / perLayer)
    const placed = coordinatorLayers + workerLayers
    const unplacedBytes = (28 - placed) * perLayer
    const freeBytes = (2000 * MiB - 500 * MiB - compute(model(), true) - coordinatorLayers * perLayer) + (1000 * MiB - compute(model(), false) - workerLayers * perLayer)
    assert.equal(thrown.missingBytes, unplacedBytes - freeBytes)
    assert.match(thrown.message, new RegExp(`layers ${placed}-27 need`))
    assert.match(thrown.message, new RegExp(`${thrown.missingBytes} bytes\\) more is needed`))
  })

  it('refuses when the coordinator cannot hold the embedding, the head and layer 0, naming it', () => {
    assert.throws(() => planStages({ ...input([node('w', 16_000)]), coordinator: node('coordinator', 400) }), (err: unknown) => {
      assert.ok(err instanceof PlanDoesNotFitError)
      assert.equal(err.shortfalls[0].nodeId, 'coordinator')
      assert.match(err.message, /^the plan does not fit: coordinator needs .* for embedding, output head and layer 0/)
      const needed = 500 * MiB + 100 * MiB + 1024 * 4096 * 2 + compute(model(), true)
      assert.equal(err.missingBytes, needed - 400 * MiB)
      return true
    })
  })

  it('keeps layer 0 on a slow coordinator under privacy on, and may give it none under privacy off', () => {
    const workers = [node('w1', 16_000, 100), node('w2', 16_000, 100)]
    const slowCoordinator = node('coordinator', 16_000, 0.01)
    const privateplan = planStages({ ...input(workers), coordinator: slowCoordinator })
    assert.equal(privateplan.stages[0].layerCount, 1)
    const open = planStages({ ...input(workers), coordinator: slowCoordinator, privacy: 'off' })
    assert.deepEqual(ranges(open), ['coordinator:0+0', 'w1:0+14', 'w2:14+14'])
    assert.ok(open.stages[0].memory.embeddingAndHeadBytes > 0, 'the head stays on the coordinator')
  })

  it('leaves out a worker that cannot hold even one layer', () => {
    const plan = planStages(input([node('tiny', 50), node('big', 16_000)]))
    assert.deepEqual(plan.unusedWorkers, ['tiny'])
    assert.deepEqual(plan.stages.map(stage => stage.nodeId), ['coordinator', 'big'])
  })

  it('sizes the KV cache from the padded context and its type', () => {
    const f16 = planStages(input([], { contextSize: 1000 }))
    assert.equal(f16.stages[0].memory.kvCacheBytes, 28 * 1024 * 1024 * 2)
    const f32 = planStages(input([], { contextSize: 1024, kvCacheType: 'f32' }))
    assert.equal(f32.stages[0].memory.kvCacheBytes, 28 * 1024 * 1024 * 4)
  })

  it('rejects malformed input with a typed error', () => {
    assert.throws(() => planStages(input([node('w', 100, 0)])), InvalidPlanInputError)
    assert.throws(() => planStages(input([node('coordinator', 100)])), /listed twice/)
    assert.throws(() => planStages(input([], { contextSize: 0 })), InvalidPlanInputError)
    assert.throws(() => planStages(input([], { model: model({ layerWeightBytes: [1, 2] }) })), /one per layer/)
  })

  it('matches an exhaustive search on small random clusters: fits whenever any plan fits, never exceeds an offer, and is as balanced as the best', () => {
    let seed = 12345
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed / 2147483648
    }
    let refused = 0
    for (let round = 0; round < 300; round++) {
      const layerCount = 1 + Math.floor(random() * 7)
      const m = model({
        layerCount,
        layerWeightBytes: Array.from({ length: layerCount }, () => (50 + Math.floor(random() * 100)) * MiB),
        embeddingBytes: 20 * MiB,
        outputHeadBytes: 20 * MiB
      })
      const nodes = Array.from({ length: 1 + Math.floor(random() * 3) }, (_, i) => ({
        id: i === 0 ? 'coordinator' : `w${i}`,
        offeredBytes: Math.floor((300 + random() * 500) * MiB),
        speed: [0.5, 1, 2, 3][Math.floor(random() * 4)]
      }))
      const trial: PlanInput = { model: m, coordinator: nodes[0], workers: nodes.slice(1), contextSize: 512, privacy: random() < 0.5 ? 'on' : 'off' }

      // Every split of the layers into consecutive ranges, one per node, that the validator accepts.
      let bestTime = Infinity
      const compositions = (left: number, parts: number): number[][] => parts === 1 ? [[left]] : Array.from({ length: left + 1 }, (_, first) => compositions(left - first, parts - 1).map(rest => [first, ...rest])).flat()
      for (const counts of compositions(layerCount, nodes.length)) {
        let next = 0
        const stages: StageRange[] = counts.map(count => {
          if (count === 0) return null
          next += count
          return { first: next - count, last: next - 1 }
        })
        try {
          planFromStages(trial, stages)
        } catch {
          continue
        }
        bestTime = Math.min(bestTime, Math.max(...counts.map((count, i) => count / nodes[i].speed)))
      }

      if (bestTime === Infinity) {
        assert.throws(() => planStages(trial), PlanDoesNotFitError, `round ${round}`)
        refused++
        continue
      }
      const plan = planStages(trial)
      assertWithinOffers(plan)
      const speedOf = new Map(nodes.map(n => [n.id, n.speed]))
      const time = Math.max(...plan.stages.map(stage => stage.layerCount / (speedOf.get(stage.nodeId) ?? NaN)))
      assert.ok(Math.abs(time - bestTime) < 1e-9, `round ${round}: stage time ${time}, best ${bestTime}`)
    }
    // Both outcomes must be exercised for the comparison to mean anything.
    assert.ok(refused > 20 && refused < 280, `${refused} of 300 clusters refused`)
  })
})
