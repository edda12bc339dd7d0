// A worker that hangs (SIGSTOP) or dies (SIGKILL) is declared dead within 6 s, the coordinator
// serves on the remaining members, and the returning worker is folded back into the full plan.
// A worker whose rpc-server dies is left out until it runs again; one whose rpc-server keeps
// crashing offers no memory, and the plan leaves it out for good.
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { deathLine, lineAfter, signalTree, startServingCluster, waitForPlan, waitForStatus, type ServingCluster } from './fault-harness.js'
import { TestCluster, waitFor, type MeshProcess } from './mesh-harness.js'
import { descendantPids } from './process-tree.js'

const PROMPT = 'The quick brown fox jumps over the lazy dog.'
const TOKENS = 16
const DETECT_LIMIT_MS = 6000

/** A worker's rpc-server child. */
async function rpcServerPid (worker: MeshProcess): Promise<number> {
  for (const pid of await descendantPids(worker.pid ?? -1)) {
    if ((await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes('rpc-server')) return pid
  }
  throw new Error('the worker runs no rpc-server')
}

describe('a hung or killed worker', { timeout: 600_000 }, () => {
  const cluster = new TestCluster()
  let model: TestModel
  let mesh: ServingCluster | undefined
  let reference: string

  before(async () => {
    model = await writeTestModel({ layers: 8 })
    mesh = await startServingCluster(cluster, { modelPath: model.path, workers: 2 })
    const answer = await mesh.api.complete(PROMPT, TOKENS)
    assert.equal(answer.status, 200, answer.body)
    reference = answer.text ?? ''
    assert.ok(reference.length > 0)
  })

  after(async () => {
    await mesh?.api.close()
    await cluster.cleanup()
    await model?.remove()
  })

  /** Applies `fault` to worker `n`, and returns how long the coordinator took to declare it dead. */
  async function detect (n: number, fault: () => Promise<void>): Promise<number> {
    if (mesh === undefined) throw new Error('no cluster')
    const from = mesh.coordinator.lines.length
    await fault()
    // The signal is sent as fault() returns; finding the process tree before it takes a while.
    const faultAt = Date.now()
    const detectedAt = await lineAfter(mesh.coordinator, from, deathLine(mesh.workerIds[n]))
    return detectedAt - faultAt
  }

  async function assertServes (): Promise<void> {
    const answer = await mesh?.api.complete(PROMPT, TOKENS)
    assert.equal(answer?.status, 200, answer?.body)
    assert.equal(answer?.text, reference, 'the greedy completion is the same on every plan')
  }

  it('declares a SIGSTOPped worker dead, serves without it, and takes it back after SIGCONT', async () => {
    if (mesh === undefined) throw new Error('no cluster')
    const paused = mesh.workers[0]
    const detectMs = await detect(0, async () => { await signalTree(paused, 'SIGSTOP') })
    console.log(`SIGSTOP detection time: ${detectMs} ms`)
    assert.ok(detectMs <= DETECT_LIMIT_MS, `detection took ${detectMs} ms`)
    const replanStart = Date.now()
    await waitForPlan(mesh.coordinator.home, [mesh.workerIds[1]])
    console.log(`SIGSTOP: engine ready on the remaining worker ${Date.now() - replanStart} ms after detection`)
    await assertServes()

    const resumedAt = Date.now()
    await signalTree(paused, 'SIGCONT')
    await waitForPlan(mesh.coordinator.home, mesh.workerIds)
    console.log(`SIGCONT: full plan back after ${Date.now() - resumedAt} ms`)
    await assertServes()
  })

  it('declares a SIGKILLed worker dead, serves without it, and takes it back after a restart', async () => {
    if (mesh === undefined) throw new Error('no cluster')
    const killed = mesh.workers[1]
    const detectMs = await detect(1, async () => { await signalTree(killed, 'SIGKILL') })
    console.log(`SIGKILL detection time: ${detectMs} ms`)
    assert.ok(detectMs <= DETECT_LIMIT_MS, `detection took ${detectMs} ms`)
    await waitForPlan(mesh.coordinator.home, [mesh.workerIds[0]])
    await assertServes()

    const restartedAt = Date.now()
    mesh.workers[1] = cluster.start(killed.home, mesh.workerArgs[1])
    await waitForPlan(mesh.coordinator.home, mesh.workerIds)
    console.log(`restart: full plan back after ${Date.now() - restartedAt} ms`)
    await assertServes()
  })

  it('leaves out a worker whose rpc-server died, and takes it back once its rpc-server runs again', async () => {
    if (mesh === undefined) throw new Error('no cluster')
    const from = mesh.coordinator.lines.length
    process.kill(await rpcServerPid(mesh.workers[0]), 'SIGKILL')
    // llama-server aborts when a worker's session breaks; the worker that broke it is to blame.
    await lineAfter(mesh.coordinator, from, /declared dead: its tunnel failed: the worker ended a ggml-rpc session/)
    await waitForPlan(mesh.coordinator.home, [mesh.workerIds[1]])
    await assertServes()
    const failedAt = Date.now()
    await waitForPlan(mesh.coordinator.home, mesh.workerIds, 120_000)
    console.log(`rpc-server death: full plan back after ${Date.now() - failedAt} ms`)
    await assertServes()
  })

  it('plans without a worker whose rpc-server keeps crashing, and says why in mesh status', async () => {
    if (mesh === undefined) throw new Error('no cluster')
    const worker = mesh.workers[0]
    // Crashes until the guardian gives up: five within a minute (the previous test's kill may count).
    const givenUp = (): boolean => worker.lines.some(line => line.includes('this worker now offers no memory'))
    // Only a restart the worker reported is a running rpc-server: one killed while it starts is
    // a failed start attempt, retried at once and not counted as a crash.
    const restartsLogged = (): number => worker.lines.filter(line => line.includes('rpc-server restarted on port')).length
    const restartsBefore = restartsLogged()
    let previous: number | undefined
    for (let crash = 1; crash <= 5; crash++) {
      const pid = await waitFor('a restarted rpc-server, or its guardian giving up', async () => {
        if (givenUp()) return 'given up'
        if (restartsLogged() < restartsBefore + crash - 1) return undefined
        const found = await rpcServerPid(worker).catch(() => undefined)
        return found !== previous ? found : undefined
      }, 30_000).catch((err: Error) => { throw new Error(`${err.message} before crash ${crash}; the worker's log:\n${worker.lines.slice(-15).join('\n')}`) })
      if (pid === 'given up') break
      process.kill(pid, 'SIGKILL')
      previous = pid
    }
    await worker.waitForLine(/this worker now offers no memory until it is restarted/)
    const report = await waitForStatus(mesh.coordinator.home, 'a warning about the worker that offers no memory', status =>
      status.warnings.some(warning => warning.kind === 'no-memory' && warning.peerId === mesh?.workerIds[0]), 90_000)
    assert.equal(report.members.find(member => member.peerId === mesh?.workerIds[0])?.memoryBytes, 0)
    // Back from its tunnel hold-off, alive but lending nothing: the plan still leaves it out.
    await waitForStatus(mesh.coordinator.home, 'the worker alive again', status =>
      status.members.some(member => member.peerId === mesh?.workerIds[0] && member.state === 'alive'), 90_000)
    await waitForPlan(mesh.coordinator.home, [mesh.workerIds[1]])
    await assertServes()
  })
})
