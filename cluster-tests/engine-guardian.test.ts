// llama-server exiting on its own is restarted with a back-off; when it keeps crashing the
// coordinator gives up and says so on /health and in `mesh status` instead of looping.
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import { freePort } from '../engine/free-port.js'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { loopbackListen, meshOk, status, TestCluster, waitFor, type MeshProcess } from './mesh-harness.js'
import { descendantPids } from './process-tree.js'

/** The coordinator's llama-server child, if one runs. */
async function llamaServerPid (coordinator: MeshProcess): Promise<number | undefined> {
  for (const pid of await descendantPids(coordinator.pid ?? -1)) {
    const command = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
    if (command.includes('llama-server')) return pid
  }
  return undefined
}

describe('a llama-server that keeps crashing', { timeout: 600_000 }, () => {
  const cluster = new TestCluster()
  let model: TestModel

  before(async () => { model = await writeTestModel({ layers: 8 }) })

  after(async () => {
    await cluster.cleanup()
    await model?.remove()
  })

  it('is restarted after each crash, and after the fifth within a minute reported failed with the reason', async () => {
    const apiPort = await freePort()
    const listen = ['--listen', loopbackListen('tcp'), '--no-mdns']
    const coordinatorHome = await cluster.home('guardian-coordinator')
    await meshOk(coordinatorHome, ['init'])
    const coordinator = cluster.start(coordinatorHome, ['--role', 'coordinator', ...listen, '--model', model.path, '--engine', 'cluster', '--api-port', String(apiPort)])
    await coordinator.listenAddr()
    const workerHome = await cluster.home('guardian-worker')
    await meshOk(workerHome, ['join', (await meshOk(coordinatorHome, ['token', '--role', 'worker', '--ttl', '10m'])).trim()])
    cluster.start(workerHome, ['--role', 'worker', ...listen])

    // Crashes count against one placement: wait for the one with the worker before the first crash.
    const servingPid = async (not?: number): Promise<number> => await waitFor('a ready llama-server using the worker', async () => {
      const engine = (await status(coordinatorHome)).engine
      const pid = await llamaServerPid(coordinator)
      const withWorker = (engine?.plan?.stages ?? []).some(stage => stage.role === 'worker' && stage.layerCount > 0)
      return engine?.state === 'ready' && withWorker && pid !== undefined && pid !== not ? pid : undefined
    }, 180_000)

    let pid = await servingPid()
    for (let crash = 1; crash <= 5; crash++) {
      process.kill(pid, 'SIGKILL')
      if (crash === 5) break
      pid = await servingPid(pid)
    }
    const failed = await waitFor('the engine to be given up on', async () => {
      const engine = (await status(coordinatorHome)).engine
      return engine?.state === 'failed' ? engine : undefined
    }, 30_000).catch((err: Error) => { throw new Error(`${err.message}; the coordinator's log:\n${coordinator.lines.join('\n')}`) })
    assert.match(failed.reason ?? '', /llama-server was killed by SIGKILL; the engine crashed 5 times within 60 s/)
    const warnings = coordinator.lines.filter(line => / warn +llama-server was killed by SIGKILL; restarting the engine in \d+ s$/.test(line))
    assert.deepEqual(warnings.map(line => /in (\d+) s$/.exec(line)?.[1]), ['1', '2', '4', '8'], 'restarts back off 1, 2, 4, 8 s')
    assert.equal(await llamaServerPid(coordinator), undefined, 'no llama-server is started again')

    const health = await fetch(`http://127.0.0.1:${apiPort}/health`)
    assert.equal(health.status, 503)
    const body = await health.json() as { status: string, reason?: string }
    assert.equal(body.status, 'failed')
    assert.match(body.reason ?? '', /crashed 5 times within 60 s/)
  })
})
