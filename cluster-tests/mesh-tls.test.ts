import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { formThreeNodeCluster, status, TestCluster } from './mesh-harness.js'

describe('mesh membership over TCP with TLS 1.3', { timeout: 120_000 }, () => {
  const cluster = new TestCluster()
  after(async () => { await cluster.cleanup() })

  it('three nodes that prefer TLS form a cluster whose connections use TLS', async () => {
    const { coordinator } = await formThreeNodeCluster(cluster, 'tcp', 'tls')
    const live = (await status(coordinator.home)).members.filter(m => m.state === 'alive')
    assert.equal(live.length, 2)
    for (const m of live) assert.equal(m.encryption, '/tls/1.0.0')
  })
})
