import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { writeTestModel, type TestModel } from '../../engine/test-support/write-test-model.js'
import { runMesh } from '../test-support/run-mesh.js'

// Runs the real command on a tiny synthetic model: it checks the output contract, not the speed.
// Needs the llama-server `mesh setup` builds.
describe('mesh bench api', () => {
  let model: TestModel

  before(async () => { model = await writeTestModel() })
  after(async () => { await model?.remove() })

  it('prints exactly the documented JSON object', async () => {
    const result = await runMesh(['bench', 'api', '--model', model.path, '--concurrency', '2', '--requests', '4', '--tokens', '8', '--json'], { timeoutMs: 300_000 })
    assert.equal(result.code, 0, result.stderr)
    const lines = result.stdout.trim().split('\n')
    assert.equal(lines.length, 1, 'stdout holds one JSON object and nothing else')
    const report = JSON.parse(lines[0]) as Record<string, unknown>
    assert.deepEqual(Object.keys(report), ['load', 'concurrency', 'tokens_per_second', 'baseline', 'ratio', 'ttft_p50_ms', 'ttft_p99_ms', 'baseline_ttft_p50_ms', 'baseline_ttft_p99_ms', 'errors'])
    assert.equal(report.load, 'text')
    assert.equal(report.concurrency, 2)
    const baseline = report.baseline as Record<string, unknown>
    assert.deepEqual(Object.keys(baseline), ['name', 'tokens_per_second'])
    assert.equal(baseline.name, 'llama-server direct')
    assert.ok((report.tokens_per_second as number) > 0 && (baseline.tokens_per_second as number) > 0)
    assert.equal(report.ratio, (report.tokens_per_second as number) / (baseline.tokens_per_second as number))
    for (const field of ['ttft_p50_ms', 'ttft_p99_ms', 'baseline_ttft_p50_ms', 'baseline_ttft_p99_ms'] as const) {
      assert.ok((report[field] as number) > 0, field)
    }
    assert.ok((report.ttft_p99_ms as number) >= (report.ttft_p50_ms as number))
    assert.equal(report.errors, 0)
  })

  it('sends chat held to a JSON schema with --json-schema, without errors on either side', async () => {
    const result = await runMesh(['bench', 'api', '--model', model.path, '--concurrency', '2', '--requests', '4', '--tokens', '8', '--json-schema', '--json'], { timeoutMs: 300_000 })
    assert.equal(result.code, 0, result.stderr)
    const report = JSON.parse(result.stdout) as { load: string, tokens_per_second: number, errors: number }
    assert.equal(report.load, 'json-schema')
    assert.ok(report.tokens_per_second > 0)
    assert.equal(report.errors, 0)
  })
})
