import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { readModelFacts } from '../../engine/model-facts.js'
import { writeTestModel, type TestModel } from '../../engine/test-support/write-test-model.js'
import { PlanDoesNotFitError, type ModelFacts } from '../../scheduler/index.js'
import { chooseServingPlan, groupKey, samePlacement, type ServingPlanInput } from './serving-plan.js'

const GiB = 1024 ** 3

describe('serving plan choice', () => {
  let model: TestModel
  let facts: ModelFacts
  before(async () => {
    model = await writeTestModel({ layers: 8 })
    facts = await readModelFacts(model.path)
  })
  after(async () => { await model.remove() })

  function input (coordinatorBytes: number, workers: number, choice: ServingPlanInput['choice'] = 'auto'): ServingPlanInput {
    return {
      choice,
      model: facts,
      coordinator: { id: 'coordinator', offeredBytes: coordinatorBytes, speed: 1 },
      workers: Array.from({ length: workers }, (_, n) => ({ id: `worker-${n}`, offeredBytes: GiB, speed: 1 })),
      contextSize: 512,
      parallel: 1,
      privacy: 'on'
    }
  }

  it('serves locally without workers when the coordinator has room, and splits the layers with workers', () => {
    assert.equal(chooseServingPlan(input(GiB, 0)).kind, 'local')
    const split = chooseServingPlan({ ...input(GiB, 2), placement: 'pipeline' })
    assert.equal(split.kind, 'cluster')
    assert.equal(split.kind === 'cluster' ? split.layout.groups[0].plan.stages.length : 0, 3)
    // Each worker holds this small model alone, so by default each serves a replica of its own.
    const replicas = chooseServingPlan(input(GiB, 2))
    assert.equal(replicas.kind === 'cluster' ? replicas.layout.groups.length : 0, 2)
  })

  it('refuses, naming the missing bytes, when the coordinator left alone has no room for the model', () => {
    assert.throws(() => chooseServingPlan(input(1024 * 1024, 0)), (err: unknown) => {
      assert.ok(err instanceof PlanDoesNotFitError, String(err))
      assert.ok(err.missingBytes > 0)
      assert.match(err.message, /missing|more is needed/)
      return true
    })
  })

  it('after a loss keeps the layers a surviving worker holds, where the speed-proportional plan would move them', () => {
    const full = chooseServingPlan({ ...input(GiB, 2), placement: 'pipeline' })
    assert.ok(full.kind === 'cluster')
    const [, lost, survivor] = full.layout.groups[0].plan.stages
    const left = { ...input(GiB, 2), placement: 'pipeline' as const, workers: input(GiB, 2).workers.filter(worker => worker.id !== lost.nodeId) }
    const recovered = chooseServingPlan({ ...left, recoverFrom: full.layout })
    assert.ok(recovered.kind === 'cluster')
    const kept = recovered.layout.groups[0].plan.stages.find(stage => stage.nodeId === survivor.nodeId)
    assert.deepEqual([kept?.firstLayer, kept?.layerCount], [survivor.firstLayer, survivor.layerCount])
    assert.equal(samePlacement(recovered, chooseServingPlan(left)), false, 'the balanced plan differs, so a rebalance follows')
  })

  it('after a loss keeps the surviving group, and a spare member or the returning one rebuilds the lost group beside it unchanged', () => {
    // Two groups wanted, three workers: one is a spare.
    const full = chooseServingPlan({ ...input(GiB, 3), replicas: 2 })
    assert.ok(full.kind === 'cluster')
    assert.equal(full.layout.groups.length, 2)
    const [lostGroup, survivorGroup] = full.layout.groups
    const lost = lostGroup.plan.stages[1].nodeId
    const live = { ...input(GiB, 3), replicas: 2, workers: input(GiB, 3).workers.filter(worker => worker.id !== lost) }
    const recovered = chooseServingPlan({ ...live, recoverFrom: full.layout })
    assert.ok(recovered.kind === 'cluster')
    assert.deepEqual(recovered.layout.groups.map(group => groupKey(group.plan)), [groupKey(survivorGroup.plan)], 'the surviving group serves on as it was')
    // The fold-in's fresh layout, with the spare (or, with --replicas unset, the returning worker): the surviving group stays as it runs.
    const survivor = survivorGroup.plan.stages[1].nodeId
    const returned = { ...input(GiB, 3), workers: input(GiB, 3).workers.filter(worker => worker.id === survivor || worker.id === lost) }
    for (const members of [live, returned]) {
      const rebuilt = chooseServingPlan(members)
      assert.ok(rebuilt.kind === 'cluster')
      assert.equal(rebuilt.layout.groups.length, 2)
      assert.ok(rebuilt.layout.groups.some(group => groupKey(group.plan) === groupKey(survivorGroup.plan)), 'the surviving group is part of the rebuilt layout unchanged')
    }
  })

  it('runs the local engine when asked to, whatever the coordinator offers', () => {
    assert.equal(chooseServingPlan(input(1024 * 1024, 0, 'local')).kind, 'local')
  })
})
