import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { writeTestModel, type TestModel } from '../../engine/test-support/write-test-model.js'
import { runMesh } from '../test-support/run-mesh.js'

// Runs the real command on a tiny synthetic model: it checks the output contract, not the speed.
// Needs the llama-server and rpc-server `mesh setup` builds.
describe('mesh bench scale', { timeout: 600_000 }, () => {
  let model: TestModel

  before(async () => { model = await writeTestModel({ layers: 4 }) })
  after(async () => { await model?.remove() })

  it('prints exactly the documented JSON object', async () => {
    const result = await runMesh(['bench', 'scale', '--workers', '2', '--model', model.path, '--concurrency', '2', '--tokens', '8', '--runs', '2', '--json'], { timeoutMs: 540_000 })
    assert.equal(result.code, 0, result.stderr)
    const lines = result.stdout.trim().split('\n')
    assert.equal(lines.length, 1, 'stdout holds one JSON object and nothing else')
    const report = JSON.parse(lines[0]) as Record<string, unknown>
    assert.deepEqual(Object.keys(report), ['workers', 'concurrency', 'single_node', 'pipeline', 'auto', 'ratio', 'identical_output', 'runs'])
    assert.equal(report.workers, 2)
    assert.equal(report.concurrency, 2)
    const [single, pipeline, auto] = (['single_node', 'pipeline', 'auto'] as const).map(side => report[side] as { tokens_per_second: number, groups?: number })
    assert.deepEqual(Object.keys(single), ['tokens_per_second'])
    assert.deepEqual(Object.keys(pipeline), ['tokens_per_second', 'groups'])
    assert.deepEqual(Object.keys(auto), ['tokens_per_second', 'groups'])
    assert.ok(single.tokens_per_second > 0 && pipeline.tokens_per_second > 0 && auto.tokens_per_second > 0)
    assert.equal(pipeline.groups, 1)
    // Each worker holds the tiny model alone, so the automatic layout is usually a group per
    // worker; speeds measured on a busy machine decide, and the layout is the scheduler's to test.
    assert.ok(auto.groups === 1 || auto.groups === 2, String(auto.groups))
    assert.equal(report.ratio, auto.tokens_per_second / pipeline.tokens_per_second)
    // Every setup measured in each of the two runs; the reported speed is their median (here their mean).
    const runs = report.runs as Record<string, number[]>
    assert.deepEqual(Object.keys(runs), ['single_node', 'pipeline', 'auto'])
    for (const [side, speed] of [['single_node', single], ['pipeline', pipeline], ['auto', auto]] as const) {
      assert.equal(runs[side].length, 2)
      assert.equal(speed.tokens_per_second, (runs[side][0] + runs[side][1]) / 2)
    }
    // Requests decoded in one batch may round differently, so only the field's type is checked here.
    assert.equal(typeof report.identical_output, 'boolean')
  })
})
