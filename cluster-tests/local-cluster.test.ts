// The orchestration behind `mesh up`: data dirs made once and reused, workers added when asked
// for more, a node that dies during start-up failing the start, and nothing left running.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { dataDir } from '../node/data-dir.js'
import { requestStatus } from '../node/status-request.js'
import { NodeStartError } from '../tools/up/errors.js'
import { LocalCluster, upLayout } from '../tools/up/local-cluster.js'
import { descendantPids, runningPids } from './process-tree.js'

describe('the local cluster of mesh up', () => {
  const clusters: LocalCluster[] = []
  const homes: string[] = []
  after(async () => {
    for (const cluster of clusters) cluster.kill()
    await Promise.all(clusters.map(async c => c.stop()))
    await Promise.all(homes.map(async h => rm(h, { recursive: true, force: true })))
  })

  async function freshHome (): Promise<string> {
    const home = await mkdtemp(join(tmpdir(), 'llmesh-up-'))
    homes.push(home)
    return home
  }

  function localCluster (home: string, workers: number, coordinatorArgs: string[] = []): LocalCluster {
    const cluster = new LocalCluster({ layout: upLayout(home), workers, coordinatorArgs, progress: () => {}, signal: new AbortController().signal })
    clusters.push(cluster)
    return cluster
  }

  // Every process the cluster started, its nodes' own children included.
  async function processTree (cluster: LocalCluster): Promise<number[]> {
    const pids = cluster.nodes.map(n => n.pid).filter(pid => pid !== undefined)
    return [...pids, ...(await Promise.all(pids.map(descendantPids))).flat()]
  }

  it('reuses its data dirs on the next start, joins the added workers, and leaves no process behind', async () => {
    const home = await freshHome()
    const layout = upLayout(home)
    const first = localCluster(home, 1)
    await first.start(async () => {})
    const firstReport = await requestStatus(dataDir(layout.coordinator))
    const worker1 = (await requestStatus(dataDir(layout.worker(1)))).self.peerId
    await first.stop()

    const second = localCluster(home, 2)
    await second.start(async () => {})
    const report = await requestStatus(dataDir(layout.coordinator))
    assert.equal(report.self.peerId, firstReport.self.peerId, 'the coordinator keeps its identity')
    assert.equal(report.self.clusterId, firstReport.self.clusterId, 'the cluster is the same')
    const alive = report.members.filter(m => m.role === 'worker' && m.state === 'alive').map(m => m.peerId)
    assert.equal(alive.length, 2)
    assert.ok(alive.includes(worker1), 'worker-1 comes back with the identity it joined with')
    const pids = await processTree(second)
    assert.ok(pids.length >= 3)

    await second.stop()
    assert.deepEqual(second.nodes.map(n => n.exit), [0, 0, 0].map(code => ({ code, signal: null })), 'every node shut down cleanly')
    assert.deepEqual(runningPids(pids), [])
  })

  it('fails the start with the last log lines of a node that exits, and nothing stays running', async () => {
    const home = await freshHome()
    const cluster = localCluster(home, 1, ['--no-such-option'])
    await assert.rejects(cluster.start(async () => {}), (err: Error) => {
      assert.ok(err instanceof NodeStartError, String(err))
      assert.match(err.message, /^coordinator exited with code 1; the end of its log .*coordinator\.log:\n.*unknown option '--no-such-option'/)
      return true
    })
    const pids = await processTree(cluster)
    await cluster.stop()
    assert.deepEqual(runningPids(pids), [])
  })
})
