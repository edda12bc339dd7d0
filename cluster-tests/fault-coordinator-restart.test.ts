// A coordinator killed with SIGKILL and started again on the same data dir gets its workers back
// on their own (they redial with backoff), with its identity, membership and API key intact,
// and serves the full plan again.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { freePort } from '../engine/free-port.js'
import { startServingCluster, waitForPlan, type ServingCluster } from './fault-harness.js'
import { meshOk, status, TestCluster } from './mesh-harness.js'

const PROMPT = 'The quick brown fox jumps over the lazy dog.'
const TOKENS = 16

describe('a coordinator restart', { timeout: 600_000 }, () => {
  const cluster = new TestCluster()
  let model: TestModel
  let mesh: ServingCluster | undefined

  before(async () => {
    model = await writeTestModel({ layers: 8 })
  })

  after(async () => {
    await mesh?.api.close()
    await cluster.cleanup()
    await model?.remove()
  })

  it('survives a SIGKILL: workers rejoin, membership and keys are intact, and the full plan returns', async () => {
    // A fixed port: the workers know the coordinator by the address they joined through.
    mesh = await startServingCluster(cluster, { modelPath: model.path, workers: 2, coordinator: { port: await freePort() } })
    const before = await status(mesh.coordinator.home)
    const reference = await mesh.api.complete(PROMPT, TOKENS)
    assert.equal(reference.status, 200, reference.body)
    const ledgerBefore = JSON.parse(await meshOk(mesh.coordinator.home, ['audit', 'verify', '--json'])) as { ok: boolean, records: number }
    assert.ok(ledgerBefore.ok && ledgerBefore.records >= 1, 'the served request is in the audit ledger')

    assert.equal(await mesh.coordinator.stop('SIGKILL'), null, 'the coordinator was killed')
    const restartedAt = Date.now()
    mesh.coordinator = cluster.start(mesh.coordinator.home, mesh.coordinatorArgs)
    const after = await waitForPlan(mesh.coordinator.home, mesh.workerIds, 120_000)
    console.log(`coordinator SIGKILL and restart: workers back and full plan ready after ${Date.now() - restartedAt} ms`)

    assert.equal(after.self.peerId, before.self.peerId, 'the coordinator keeps its key')
    assert.equal(after.self.clusterId, before.self.clusterId)
    const members = (report: typeof before): string[] => report.members.map(m => `${m.peerId}:${m.role}`).sort()
    assert.deepEqual(members(after), members(before), 'the membership survives')
    assert.ok(after.members.every(m => m.state === 'alive'), 'every worker rejoined on its own')
    const again = await mesh.api.complete(PROMPT, TOKENS)
    assert.equal(again.status, 200, 'the API key survives: the same key still opens the API')
    assert.equal(again.text, reference.text)
    const ledgerAfter = JSON.parse(await meshOk(mesh.coordinator.home, ['audit', 'verify', '--json'])) as { ok: boolean, records: number }
    assert.ok(ledgerAfter.ok, 'the audit ledger verifies after the SIGKILL')
    assert.ok(ledgerAfter.records > ledgerBefore.records, 'records from before the SIGKILL are kept and new ones are appended')
  })
})
