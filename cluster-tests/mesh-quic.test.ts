import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { clusterCapabilities, formThreeNodeCluster, mesh, status, TestCluster, waitFor, type MeshProcess } from './mesh-harness.js'

describe('mesh membership on 127.0.0.1 over QUIC', { timeout: 120_000 }, () => {
  const cluster = new TestCluster()
  after(async () => { await cluster.cleanup() })

  let coordinator: MeshProcess
  let workers: MeshProcess[]

  it('three nodes form a cluster from invites over QUIC and the coordinator lists two live workers', async () => {
    ({ coordinator, workers } = await formThreeNodeCluster(cluster, 'quic'))
    const result = await mesh(coordinator.home, ['status', '--json'])
    assert.equal(result.code, 0, result.stderr)
    const report = JSON.parse(result.stdout) as { members: Array<{ role: string, state: string, transport: string | null }> }
    const live = report.members.filter(m => m.state === 'alive' && m.role === 'worker')
    assert.equal(live.length, 2)
    for (const m of live) assert.equal(m.transport, 'quic')
  })

  it('lists every member\'s capabilities from the private DHT while the coordinator is down', async () => {
    const ids = await Promise.all([coordinator, ...workers].map(async p => (await status(p.home)).self.peerId))
    await waitFor('the workers connected to each other', async () => {
      const other = (await status(workers[0].home)).members.find(m => m.peerId === ids[2])
      return other?.state === 'alive' && other.addresses.length > 0 ? true : undefined
    })
    await coordinator.stop()
    // Records are republished whenever members meet, so the worker holds every record.
    const caps = await waitFor('all three capability records', async () => {
      const found = await clusterCapabilities(workers[0].home)
      return Object.keys(found).length === 3 ? found : undefined
    }, 15_000)
    assert.deepEqual(Object.keys(caps).sort(), [...ids].sort())
    for (const c of Object.values(caps)) assert.ok(c.memoryBytes > 0 && c.cpuCores > 0)
  })
})
