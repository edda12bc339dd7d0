import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { writeTestModel, type TestModel } from '../../engine/test-support/write-test-model.js'
import { runMesh } from '../test-support/run-mesh.js'

// Runs the real command (rpc-servers, libp2p nodes, llama-servers) on a tiny synthetic model:
// it checks the output contract of issue 4, not the speed. Needs the tools `mesh setup` builds.
describe('mesh bench cluster', () => {
  let model: TestModel

  before(async () => { model = await writeTestModel({ ctx: 1024 }) })
  after(async () => { await model?.remove() })

  // In libp2p streams over QUIC: the tunnel tests run llama-server's sessions on the data
  // channel, this one the way they go where only QUIC gets through.
  it('prints exactly the documented JSON object', async () => {
    const result = await runMesh(['bench', 'cluster', '--workers', '2', '--model', model.path, '--tokens', '8', '--runs', '1', '--transport', 'quic', '--carrier', 'libp2p', '--json'], { timeoutMs: 300_000 })
    assert.equal(result.code, 0, result.stderr)
    const lines = result.stdout.trim().split('\n')
    assert.equal(lines.length, 1, 'stdout holds one JSON object and nothing else')
    const report = JSON.parse(lines[0]) as Record<string, unknown>
    assert.deepEqual(Object.keys(report), ['tokens_per_second', 'prefill_tokens_per_second', 'baseline', 'ratio', 'identical_output', 'plan', 'ms_per_token', 'baseline_ms_per_token', 'load_ms', 'baseline_load_ms', 'carrier'])
    const baseline = report.baseline as Record<string, unknown>
    assert.deepEqual(Object.keys(baseline), ['name', 'tokens_per_second', 'prefill_tokens_per_second'])
    assert.equal(baseline.name, 'llama-server --rpc direct')
    for (const speeds of [report, baseline]) {
      assert.ok((speeds.tokens_per_second as number) > 0 && (speeds.prefill_tokens_per_second as number) > 0)
    }
    assert.equal(report.ratio, (report.tokens_per_second as number) / (baseline.tokens_per_second as number))
    // One run: its time per token is the inverse of its decode speed.
    assert.ok(Math.abs((report.ms_per_token as number) - 1000 / (report.tokens_per_second as number)) < 1e-9)
    assert.ok(Math.abs((report.baseline_ms_per_token as number) - 1000 / (baseline.tokens_per_second as number)) < 1e-9)
    assert.ok((report.load_ms as number) > 0 && (report.baseline_load_ms as number) > 0)
    assert.equal(report.identical_output, true)
    assert.equal(report.carrier, 'libp2p')
    const plan = report.plan as Array<{ role: string, layers: number }>
    assert.deepEqual(plan.map(stage => stage.role), ['coordinator', 'worker', 'worker'])
    assert.equal(plan.reduce((sum, stage) => sum + stage.layers, 0), 4)
  })

  it('ends with one clear error line for a file that is not a GGUF model', async () => {
    const notes = join(model.dir, 'notes.txt')
    await writeFile(notes, 'not a model\n')
    const result = await runMesh(['bench', 'cluster', '--model', notes, '--tokens', '8', '--json'])
    assert.equal(result.code, 1)
    assert.equal(result.stdout, '')
    assert.match(result.stderr, /^mesh: .*notes\.txt/m)
  })
})
