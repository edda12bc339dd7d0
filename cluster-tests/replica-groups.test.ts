// Two workers that each hold the model serve as two replica groups, each a llama-server of its
// own: every group answers greedy requests exactly as one pipeline and as llama-server alone,
// both groups take requests, and killing a worker of one group under load fails no request
// while the other group keeps serving without a restart. The killed worker's return rebuilds
// its group beside the running one, and a lone stream whose group loses its worker goes on, on
// the other group, with the undisturbed run's greedy text.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { readFile } from 'node:fs/promises'
import { setTimeout as delay } from 'node:timers/promises'
import { freePort } from '../engine/free-port.js'
import { startLlamaServer } from '../engine/llama-server.js'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { bannedTokenBias, streamCompletion } from '../tools/bench/failover-bench.js'
import { startServingCluster, waitForPlan, waitForStatus, type ServingCluster } from './fault-harness.js'
import { metricsText, status, TestCluster, type MeshProcess } from './mesh-harness.js'
import { descendantPids } from './process-tree.js'
import type { GroupStatus } from '../node/serving/engine-status.js'

const PROMPTS = ['The quick brown fox jumps over the lazy dog.', 'Once upon a time', 'A mesh of machines', 'Hello, world! 123']
const TOKENS = 24
const REQUEST_TIMEOUT_MS = 120_000
/** The resumed stream: long enough that its group's worker dies well before it ends. */
const RESUME_TOKENS = 48
const KILL_AFTER_TOKENS = 4

/**
 * The greedy completion of every prompt by llama-server alone, in this process: the reference;
 * and, kept to whole characters and its full length by `banned`, the long one of the first prompt.
 */
async function aloneCompletions (modelPath: string, banned: number[]): Promise<{ texts: string[], long: string }> {
  const server = await startLlamaServer({ modelPath, threads: 1 })
  try {
    const complete = async (prompt: string, maxTokens: number, bannedTokens: number[] = []): Promise<string> => {
      let text = ''
      for await (const piece of server.generate(prompt, { maxTokens, bannedTokens })) text += piece.text
      return text
    }
    const texts: string[] = []
    for (const prompt of PROMPTS) texts.push(await complete(prompt, TOKENS))
    return { texts, long: await complete(PROMPTS[0], RESUME_TOKENS, banned) }
  } finally {
    await server.dispose()
  }
}

const workersOf = (group: GroupStatus): string[] => group.plan.stages.slice(1).map(stage => stage.nodeId)

/** The pid of the coordinator's llama-server of group `id` (each listens on llama-server-ID.sock). */
async function llamaServerPid (coordinator: MeshProcess, id: string): Promise<number | undefined> {
  for (const pid of await descendantPids(coordinator.pid ?? 0)) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
    if (cmdline.includes(`llama-server-${id}.sock`)) return pid
  }
  return undefined
}

function metric (text: string, name: string, group: string): number {
  const line = text.split('\n').find(l => l.startsWith(`${name}{group="${group}"}`))
  return line === undefined ? NaN : Number(line.split(' ').pop())
}

describe('replica groups', { timeout: 900_000 }, () => {
  const cluster = new TestCluster()
  let model: TestModel
  let mesh: ServingCluster | undefined
  let reference: string[]
  let longReference: string
  let bias: Record<string, number>

  before(async () => {
    model = await writeTestModel({ layers: 8 })
    bias = await bannedTokenBias(model.path);
    ({ texts: reference, long: longReference } = await aloneCompletions(model.path, Object.keys(bias).map(Number)))
  })

  after(async () => {
    await mesh?.api.close()
    await cluster.cleanup()
    await model?.remove()
  })

  // Sequences decoded in one batch may round differently from one decoded alone, so equal
  // answers are asked of `copies` requests at a time: on two groups, one each (fewest active first).
  async function completeEach (copies: number, prompts = PROMPTS): Promise<string[][]> {
    const texts: string[][] = []
    for (const prompt of prompts) {
      const answers = await Promise.all(Array.from({ length: copies }, async () => await mesh!.api.complete(prompt, TOKENS, REQUEST_TIMEOUT_MS)))
      for (const answer of answers) assert.equal(answer.status, 200, answer.body)
      texts.push(answers.map(answer => answer.text ?? ''))
    }
    return texts
  }

  it('answers greedy requests like one pipeline and like llama-server alone, on both groups', async () => {
    // First one pipeline over both workers (llama-server from the start: --engine cluster); a fixed port, so that the workers find the coordinator again after its restart.
    mesh = await startServingCluster(cluster, { modelPath: model.path, workers: 2, coordinator: { port: await freePort() }, layoutArgs: ['--engine', 'cluster', '--placement', 'pipeline', '--parallel', '2'] })
    const pipeline = (await status(mesh.coordinator.home)).engine?.groups ?? []
    assert.equal(pipeline.length, 1, 'one pipeline')
    assert.deepEqual(await completeEach(1), reference.map(text => [text]), 'one pipeline answers as llama-server alone')

    await mesh.coordinator.stop('SIGTERM')
    mesh.coordinatorArgs = mesh.coordinatorArgs.map(arg => arg === 'pipeline' ? 'replicas' : arg)
    mesh.coordinator = cluster.start(mesh.coordinator.home, mesh.coordinatorArgs)
    const report = await waitForPlan(mesh.coordinator.home, mesh.workerIds, 180_000)
    const groups = report.engine?.groups ?? []
    assert.equal(groups.length, 2, report.engine?.planTable ?? 'no plan')
    assert.deepEqual(groups.map(workersOf).flat().sort(), [...mesh.workerIds].sort(), 'each worker serves in a group of its own')
    for (const group of groups) assert.equal(group.plan.stages[0].layerCount, 1, 'the coordinator keeps layer 0 in every group')
    assert.equal(report.engine?.slots, 4, 'the API admits the slots of both groups')

    assert.deepEqual(await completeEach(2), reference.map(text => [text, text]), 'both groups answer as llama-server alone')
    // The rate counts whole seconds gone by.
    await delay(1100)
    const text = await metricsText(mesh.coordinator.home)
    for (const group of groups) {
      assert.equal(metric(text, 'llmesh_group_slots', group.id ?? ''), 2, text)
      assert.ok(metric(text, 'llmesh_group_tokens_per_second', group.id ?? '') > 0, `group ${group.id ?? ''} generated nothing:\n${text}`)
    }
  })

  it('keeps a fault local: a worker killed under load fails no request and the other group never restarts', async () => {
    assert.ok(mesh !== undefined)
    const serving = mesh
    const groups = (await status(serving.coordinator.home)).engine?.groups ?? []
    assert.equal(groups.length, 2)
    const [victimGroup, survivor] = groups
    const victim = serving.workerIds.indexOf(workersOf(victimGroup)[0])

    // Four clients, each sending greedy requests one after another until told to stop. (Their
    // answers are not compared: requests decoded in one batch may round differently.)
    let stop = false
    let killedAt = Infinity
    const failures: string[] = []
    const doneAfterKill = [0, 0, 0, 0]
    const clients = doneAfterKill.map(async (_, client) => {
      for (let n = 0; !stop; n++) {
        const index = (client + n) % PROMPTS.length
        const answer = await serving.api.complete(PROMPTS[index], TOKENS, REQUEST_TIMEOUT_MS).catch((err: Error) => ({ status: 0, body: err.message, text: undefined }))
        if (answer.status !== 200) failures.push(`client ${client}: ${answer.status} ${answer.body}`)
        if (Date.now() > killedAt) doneAfterKill[client]++
      }
    })
    // The surviving group's id changes if it is ever restarted; the engine must serve throughout.
    const seen: string[] = []
    const watch = (async () => {
      while (!stop) {
        const engine = (await status(serving.coordinator.home)).engine
        const group = engine?.groups?.find(g => workersOf(g).join() === workersOf(survivor).join())
        seen.push(`${engine?.state ?? 'none'}:${group?.id ?? 'gone'}`)
        await delay(250)
      }
    })()

    await delay(3000)
    killedAt = Date.now()
    await serving.workers[victim].stop('SIGKILL')
    await waitForStatus(serving.coordinator.home, 'the layout without the killed worker', report => (report.engine?.groups ?? []).length === 1, 60_000)
    // Every client completes requests on the surviving group after the loss.
    const deadline = Date.now() + 120_000
    while (doneAfterKill.some(done => done < 2) && Date.now() < deadline) await delay(250)
    stop = true
    await Promise.all([...clients, watch])

    assert.deepEqual(failures, [], `no request failed; the coordinator's log ends:\n${serving.coordinator.lines.slice(-30).join('\n')}`)
    assert.ok(doneAfterKill.every(done => done >= 2), `requests completed after the kill: ${doneAfterKill.join(', ')}`)
    const log = serving.coordinator.lines.slice(-30).join('\n')
    assert.deepEqual([...new Set(seen)], [`ready:${survivor.id ?? ''}`], `the engine served throughout and the surviving group was never restarted; the coordinator's log ends:\n${log}`)
    const after = (await status(serving.coordinator.home)).engine?.groups ?? []
    assert.deepEqual(after.map(workersOf), [workersOf(survivor)])
  })

  it('rebuilds the lost group when its worker returns, beside the group that kept serving', async () => {
    assert.ok(mesh !== undefined)
    const serving = mesh
    const [survivor] = (await status(serving.coordinator.home)).engine?.groups ?? []
    assert.ok(survivor?.id != null, 'one group serves after the loss')
    const survivorPid = await llamaServerPid(serving.coordinator, survivor.id)
    assert.ok(survivorPid !== undefined, `no llama-server of group ${survivor.id} below the coordinator`)
    const victim = serving.workerIds.findIndex(id => !workersOf(survivor).includes(id))
    const from = serving.coordinator.lines.length

    // The killed worker's `mesh start` again, on its data dir (its identity and tensor cache).
    const returnedAt = Date.now()
    serving.workers[victim] = cluster.start(serving.workers[victim].home, serving.workerArgs[victim])
    const report = await waitForStatus(serving.coordinator.home, 'two replica groups again', report => {
      const groups = report.engine?.groups ?? []
      return report.engine?.state === 'ready' && groups.length === 2 && groups.every(group => group.id !== null)
    }, 120_000).catch((err: Error) => { throw new Error(`${err.message}\nthe coordinator's log since the worker returned:\n${serving.coordinator.lines.slice(from).join('\n')}`) })
    console.log(`rebuilt ${Date.now() - returnedAt} ms after the worker's mesh start; the coordinator's log meanwhile:\n${serving.coordinator.lines.slice(from).join('\n')}`)
    const groups = report.engine?.groups ?? []
    assert.deepEqual(groups.map(workersOf).flat().sort(), [...serving.workerIds].sort(), report.engine?.planTable ?? 'no plan')
    const kept = groups.find(group => workersOf(group).join() === workersOf(survivor).join())
    assert.equal(kept?.id, survivor.id, 'the group that kept serving is the same group')
    assert.equal(await llamaServerPid(serving.coordinator, survivor.id), survivorPid, 'its llama-server was never restarted')

    // Both groups answer (one request each: fewest active first), as llama-server alone does.
    assert.deepEqual(await completeEach(2, PROMPTS.slice(0, 1)), [[reference[0], reference[0]]], 'the rebuilt group answers as llama-server alone')
    await delay(1100)
    const text = await metricsText(serving.coordinator.home)
    const rebuilt = groups.find(group => group !== kept)?.id ?? ''
    assert.ok(metric(text, 'llmesh_group_tokens_per_second', rebuilt) > 0, `the rebuilt group ${rebuilt} generated nothing:\n${text}`)
  })

  it('resumes a lone stream on the other group with the undisturbed greedy text', async () => {
    assert.ok(mesh !== undefined)
    const serving = mesh
    const apiBase = serving.api.baseUrl
    assert.ok(apiBase !== undefined)
    // Whole characters only and no early end, so that every token is an event of the stream.
    const request = { model: 'model', prompt: PROMPTS[0], max_tokens: RESUME_TOKENS, temperature: 0, logit_bias: bias, stream: true }

    // Alone, the stream runs on one group; that group's worker dies a few tokens in.
    let killing: Promise<string> | undefined
    let killedAt = Infinity
    const disturbed = await streamCompletion(apiBase, serving.api.apiKey, request, received => {
      if (received !== KILL_AFTER_TOKENS) return
      killing = (async () => {
        const groups = (await status(serving.coordinator.home)).engine?.groups ?? []
        const busy = groups.find(group => group.activeRequests > 0)
        if (busy === undefined) throw new Error(`no group generates the stream: ${JSON.stringify(groups)}`)
        const victim = serving.workerIds.indexOf(workersOf(busy)[0])
        killedAt = Date.now()
        await serving.workers[victim].stop('SIGKILL')
        return serving.workerIds[victim]
      })()
    })
    assert.ok(killing !== undefined, 'the stream reached the kill')
    const killed = await killing
    console.log(`resume: the stream took ${disturbed.arrivals.at(-1)! - disturbed.arrivals[0]} ms, its group's worker killed after ${killedAt - disturbed.arrivals[0]} ms`)
    assert.equal(disturbed.arrivals.length, RESUME_TOKENS, 'the stream delivered every token')
    const afterKill = disturbed.arrivals.filter(at => at > killedAt).length
    assert.ok(afterKill >= RESUME_TOKENS / 2, `only ${afterKill} tokens came after the kill: ask for a longer stream`)
    await waitForStatus(serving.coordinator.home, 'the layout without the killed worker', report => (report.engine?.groups ?? []).every(group => !workersOf(group).includes(killed)))
    // Groups answer as llama-server alone does (the first test): its text is the undisturbed run's.
    assert.equal(disturbed.text, longReference, 'the resumed stream has the undisturbed greedy text')
  })
})
