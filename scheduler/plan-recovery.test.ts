import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { PlanDoesNotFitError } from './errors.js'
import { computeBufferBytes } from './memory.js'
import { planRecovery } from './plan-recovery.js'
import { planFromStages } from './stages-override.js'
import { assertWithinOffers, input, MiB, model, node, ranges } from './test-support/plan-fixtures.js'
import type { NodeOffer } from './types.js'

// A layer of the fixture model with its KV cache for 4096 tokens in f16.
const LAYER_BYTES = 100 * MiB + 1024 * 4096 * 2

/** MiB a coordinator must offer to hold the embedding, the output head and `layers` layers. */
function coordinatorOfferFor (layers: number): number {
  const fixed = 500 * MiB + computeBufferBytes({ model: model(), contextSize: 4096, parallel: 1, kvCacheType: 'f16' }, true)
  return Math.ceil((fixed + layers * LAYER_BYTES) / MiB)
}

// The plan before the loss: coordinator 0-9, a 10-18, b 19-27.
function previousPlan (coordinator: NodeOffer = node('coordinator', 16_000)): ReturnType<typeof planFromStages> {
  return planFromStages(input([node('a', 16_000), node('b', 16_000)], { coordinator }), [{ first: 0, last: 9 }, { first: 10, last: 18 }, { first: 19, last: 27 }])
}

describe('planRecovery', () => {
  it('lets the coordinator take a lost middle stage, so the last worker keeps its layers', () => {
    const plan = planRecovery(input([node('b', 16_000)]), previousPlan())
    assert.deepEqual(ranges(plan), ['coordinator:0+19', 'b:19+9'])
    assertWithinOffers(plan)
  })

  it('keeps a lost last stage on the coordinator when it has room, sending the survivor nothing', () => {
    const plan = planRecovery(input([node('a', 16_000)]), previousPlan())
    assert.deepEqual(ranges(plan), ['coordinator:0+28'])
    assert.deepEqual(plan.unusedWorkers, ['a'])
  })

  it('gives a survivor only the layers the coordinator has no room for, next to those it holds', () => {
    // The coordinator has room for 12 layers: the survivor gives up 10-11 (nothing to send) and takes 19-27.
    const coordinator = node('coordinator', coordinatorOfferFor(12))
    const plan = planRecovery(input([node('a', 16_000)], { coordinator }), previousPlan(coordinator))
    assert.deepEqual(ranges(plan), ['coordinator:0+12', 'a:12+16'])
    assertWithinOffers(plan)
  })

  it('sends nothing to a worker that held no layers; the rebalance that follows folds it in', () => {
    const plan = planRecovery(input([node('b', 16_000), node('new', 16_000, 4)]), previousPlan())
    assert.deepEqual(ranges(plan), ['coordinator:0+19', 'b:19+9'])
    assert.deepEqual(plan.unusedWorkers, ['new'])
  })

  it('refuses, saying what is missing, when the survivors cannot hold the model', () => {
    const coordinator = node('coordinator', coordinatorOfferFor(10))
    assert.throws(() => planRecovery(input([node('a', coordinatorOfferFor(0))], { coordinator }), previousPlan(coordinator)), (err: unknown) =>
      err instanceof PlanDoesNotFitError && err.missingBytes > 0)
  })
})
