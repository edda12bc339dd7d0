import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { planLayout, planLayoutRecovery } from './plan-layout.js'
import { planStages } from './plan-stages.js'
import { planRecovery } from './plan-recovery.js'
import { renderLayoutTable, renderPlanTable } from './plan-table.js'
import { InvalidPlacementError, PlanDoesNotFitError } from './errors.js'
import { assertWithinOffers, input, node, ranges } from './test-support/plan-fixtures.js'
import type { ServingLayout } from './types.js'

// The fixture model: 28 layers of about 108 MiB each (weights and KV cache). A worker offering
// 4000 MiB holds layers 1-27 alone; one offering 2000 MiB holds about half of them.
const whole = (id: string, speed = 1): ReturnType<typeof node> => node(id, 4000, speed)
const half = (id: string, speed = 1): ReturnType<typeof node> => node(id, 2000, speed)

const groupWorkers = (layout: ServingLayout): string[][] => layout.groups.map(group => group.plan.stages.filter(stage => stage.role === 'worker').map(stage => stage.nodeId))

function assertGroupsValid (layout: ServingLayout): void {
  const seen = new Set<string>()
  for (const { plan } of layout.groups) {
    assertWithinOffers(plan)
    assert.equal(plan.stages[0].role, 'coordinator')
    assert.equal(plan.stages.reduce((sum, stage) => sum + stage.layerCount, 0), plan.layerCount, 'each group holds the whole model')
    for (const stage of plan.stages.slice(1)) {
      assert.ok(!seen.has(stage.nodeId), `${stage.nodeId} is in two groups`)
      seen.add(stage.nodeId)
    }
  }
}

describe('planLayout', () => {
  it('makes one group per worker when every worker can hold the model', () => {
    const layout = planLayout(input([whole('a'), whole('b'), whole('c')]))
    assert.deepEqual(groupWorkers(layout), [['a'], ['b'], ['c']])
    // The coordinator keeps only layer 0 (privacy) in each group: its compute serves them all.
    for (const group of layout.groups) assert.deepEqual(ranges(group.plan).slice(0, 1), ['coordinator:0+1'])
    assert.deepEqual(layout.unusedWorkers, [])
    assertGroupsValid(layout)
    // Predicted: each group 1 / (1 layer at a third of the coordinator + 27 layers at 1).
    assert.ok(Math.abs(layout.speed - 3 / 30) < 1e-12, String(layout.speed))
  })

  it('serves one pipeline, the same as planStages, when no worker can hold the model', () => {
    const workers = [half('a'), half('b')]
    const layout = planLayout(input(workers))
    assert.equal(layout.groups.length, 1)
    assert.deepEqual(layout.groups[0].plan, planStages(input(workers)))
  })

  it('forms two groups of two when four workers each hold half the model', () => {
    const layout = planLayout(input([half('a'), half('b'), half('c'), half('d')]))
    assert.deepEqual(groupWorkers(layout), [['a', 'c'], ['b', 'd']])
    assertGroupsValid(layout)
  })

  it('groups heterogeneous workers: a big fast one alone, two small ones together', () => {
    const layout = planLayout(input([half('small1'), whole('big', 2), half('small2')]))
    assert.deepEqual(groupWorkers(layout), [['big'], ['small1', 'small2']])
    assertGroupsValid(layout)
    const [fast, slow] = layout.groups
    assert.ok(fast.speed > slow.speed, 'the group of the fast worker is predicted faster')
    assert.ok(Math.abs(layout.speed - (fast.speed + slow.speed)) < 1e-12, 'group speeds add up')
  })

  it('bounds the number of groups by the coordinator\'s memory under privacy', () => {
    // Each group needs its own embedding, head, layer 0 and KV cache on the coordinator (about 775 MiB).
    const workers = [whole('a'), whole('b'), whole('c'), whole('d')]
    const roomy = planLayout(input(workers))
    assert.equal(roomy.groups.length, 4)
    const tight = planLayout(input(workers, { coordinator: node('coordinator', 1800) }))
    assert.equal(tight.groups.length, 2)
    assertGroupsValid(tight)
    const coordinatorBytes = tight.groups.reduce((sum, group) => sum + group.plan.stages[0].memory.totalBytes, 0)
    assert.ok(coordinatorBytes <= 1800 * 1024 * 1024, 'the coordinator is charged once per group, within its offer')
  })

  it('lets the coordinator serve a whole replica alone under privacy off', () => {
    const layout = planLayout(input([whole('a')], { privacy: 'off' }))
    assert.deepEqual(groupWorkers(layout), [['a'], []])
    assert.deepEqual(ranges(layout.groups[0].plan), ['coordinator:0+0', 'a:0+28'])
    assert.deepEqual(ranges(layout.groups[1].plan), ['coordinator:0+28'])
    assertGroupsValid(layout)
    // Under privacy on the coordinator is no replica of its own.
    assert.equal(planLayout(input([whole('a')])).groups.length, 1)
  })

  it('follows --placement and --replicas', () => {
    const workers = [whole('a'), whole('b'), whole('c')]
    const pipeline = planLayout({ ...input(workers), placement: 'pipeline' })
    assert.deepEqual(pipeline.groups.map(group => group.plan), [planStages(input(workers))])
    assert.deepEqual(groupWorkers(planLayout({ ...input(workers), replicas: 2 })), [['a', 'c'], ['b']])
    assert.equal(planLayout({ ...input(workers), placement: 'replicas' }).groups.length, 3)
    assert.equal(planLayout({ ...input(workers), replicas: 1 }).groups.length, 1)
  })

  it('refuses an override that does not fit, saying what is missing where', () => {
    // Two groups of one half-size worker each cannot hold the model.
    assert.throws(() => planLayout({ ...input([half('a'), half('b')]), replicas: 2 }), (err: unknown) => {
      assert.ok(err instanceof PlanDoesNotFitError)
      assert.match(err.message, /2 replica groups do not fit: group 1 \(a\) cannot hold the model/)
      assert.ok(err.missingBytes > 0)
      return true
    })
    // The coordinator has room for two copies of its part, not three.
    assert.throws(() => planLayout({ ...input([whole('a'), whole('b'), whole('c')], { coordinator: node('coordinator', 1800) }), replicas: 3 }), (err: unknown) => {
      assert.ok(err instanceof PlanDoesNotFitError)
      assert.equal(err.shortfalls[0].nodeId, 'coordinator')
      assert.match(err.message, /needs .* for 3 copies \(one per group\) of the embedding, output head and layer 0/)
      assert.equal(err.missingBytes, err.shortfalls[0].neededBytes - 1800 * 1024 * 1024)
      return true
    })
    assert.throws(() => planLayout({ ...input([half('a'), half('b')]), placement: 'replicas' }), PlanDoesNotFitError)
    assert.throws(() => planLayout({ ...input([whole('a')]), replicas: 2 }), /more groups than there are workers \(1\)/)
    assert.throws(() => planLayout({ ...input([whole('a'), whole('b')]), placement: 'pipeline', replicas: 2 }), InvalidPlacementError)
    assert.throws(() => planLayout({ ...input([whole('a'), whole('b')]), stages: [{ first: 0, last: 0 }, { first: 1, last: 27 }], replicas: 2 }), InvalidPlacementError)
    assert.throws(() => planLayout({ ...input([whole('a')]), replicas: 0 }), /--replicas must be a whole number of at least 1/)
    assert.throws(() => planLayout({ ...input([whole('a')]), placement: 'spread' as 'auto' }), /placement "spread" is not known/)
  })

  it('renders one table per group', () => {
    const layout = planLayout(input([whole('a'), whole('b')]))
    const table = renderLayoutTable(layout)
    assert.match(table, /^group 1 of 2 \(own llama-server\):$/m)
    assert.match(table, /^group 2 of 2 \(own llama-server\):$/m)
    const one = planLayout(input([half('a'), half('b')]))
    assert.equal(renderLayoutTable(one), renderPlanTable(one.groups[0].plan))
  })
})

describe('planLayoutRecovery', () => {
  it('keeps the groups that lost no worker exactly as they were', () => {
    const full = planLayout(input([whole('a'), whole('b'), whole('c')]))
    const left = input([whole('a'), whole('c')])
    const recovered = planLayoutRecovery(left, full)
    assert.deepEqual(recovered.groups.map(group => group.plan), [full.groups[0].plan, full.groups[2].plan])
    assert.deepEqual(recovered.unusedWorkers, [])
  })

  it('serves on unchanged when no worker was lost (a crash)', () => {
    const full = planLayout(input([whole('a'), whole('b')]))
    const kept = planLayoutRecovery(input([whole('a'), whole('b')]), full)
    assert.deepEqual(kept.groups.map(group => group.plan), full.groups.map(group => group.plan))
    // A group kept alone after a loss stays as it is too, though one pipeline would be planned otherwise.
    const one = planLayoutRecovery(input([whole('b')]), planLayoutRecovery(input([whole('b')]), full))
    assert.deepEqual(one.groups.map(group => group.plan), [full.groups[1].plan])
  })

  it('re-places a single pipeline as planRecovery does', () => {
    const full = planLayout(input([half('a'), half('b'), half('c')]))
    assert.equal(full.groups.length, 1)
    const left = input([half('a'), half('c')])
    assert.deepEqual(planLayoutRecovery(left, full).groups.map(group => group.plan), [planRecovery(left, full.groups[0].plan)])
  })
})
