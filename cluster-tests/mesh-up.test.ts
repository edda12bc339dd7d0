// `mesh up` as a user runs it: a coordinator and two workers on this machine, the API answering
// with the printed key, and Ctrl-C stopping every process it started.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { access, mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { loadLocalEngine } from '../engine/local-engine.js'
import { findLlamaCppTools } from '../engine/llama-cpp/tools.js'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { runMesh } from '../tools/test-support/run-mesh.js'
import { descendantPids, runningPids } from './process-tree.js'
import type { StatusReport } from '../node/status-report.js'
import { freePort } from '../engine/free-port.js'
import { MeshUp } from './mesh-up-process.js'
import { freshInstall, type FreshInstall } from './fresh-install.js'

const PROMPT = 'The quick brown fox jumps over the lazy dog.'
const COMPLETION_TOKENS = 32

/** Greedy completion of PROMPT by the local engine, in this process: the reference output. */
async function localCompletion (modelPath: string): Promise<string> {
  const engine = await loadLocalEngine({ modelPath })
  try {
    let text = ''
    for await (const piece of engine.generate(PROMPT, { maxTokens: COMPLETION_TOKENS })) text += piece.text
    return text
  } finally {
    await engine.dispose()
  }
}

async function listenOnFreePort (): Promise<Server> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return server
}

function portOf (server: Server): number {
  const address = server.address()
  if (address == null || typeof address === 'string') throw new Error('no TCP port')
  return address.port
}

/**
 * A cache as a first start leaves it once the llama.cpp tools are built: their build (linked from
 * the cache `mesh setup` filled before the tests) and nothing else, no native binding.
 */
async function cacheWithToolsOnly (): Promise<string> {
  const tools = await findLlamaCppTools()
  const buildDir = dirname(dirname(tools.llamaServer))
  const cache = await mkdtemp(join(tmpdir(), 'llmesh-first-start-cache-'))
  await mkdir(join(cache, 'llama.cpp'))
  await symlink(buildDir, join(cache, 'llama.cpp', basename(buildDir)), 'dir')
  return cache
}

describe('mesh up', () => {
  let model: TestModel
  let home: string
  let firstStartCache: string
  let install: FreshInstall
  const runs: MeshUp[] = []

  before(async () => {
    // Eight layers, so that the layout has some for the coordinator and each of two workers.
    model = await writeTestModel({ layers: 8 })
    home = await mkdtemp(join(tmpdir(), 'llmesh-mesh-up-'))
    firstStartCache = await cacheWithToolsOnly()
    install = await freshInstall()
  })

  after(async () => {
    await Promise.all(runs.map(async run => run.kill()))
    await rm(home, { recursive: true, force: true })
    await rm(firstStartCache, { recursive: true, force: true })
    await install.remove()
    await model.remove()
  })

  it('serves the API with two workers, prints the key and the plan, and stops everything on Ctrl-C', async () => {
    const port = await freePort()
    // A first start, from an installation without the local engine's native binding: the
    // workers' job waits for the llama.cpp tools only, not for that binding (12 minutes more on
    // 2 cores), which it neither builds nor links.
    const up = new MeshUp(home, ['--workers', '2', '--api-port', String(port), '--model', model.path], { env: { LLMESH_CACHE: firstStartCache }, meshBin: install.meshBin })
    runs.push(up)
    await up.ready()
    assert.doesNotMatch(up.stderr, /native binding/)
    await assert.rejects(access(install.localBuilds), 'no native binding was built or linked')
    assert.deepEqual((await readdir(firstStartCache)).filter(entry => entry.startsWith('node-llama-cpp')), [], 'nothing of the native binding is made in the cache')

    const apiKey = (await readFile(join(home, 'up', 'coordinator', 'api-key'), 'utf8')).trim()
    assert.match(up.stdout, new RegExp(`^api key: ${apiKey}$`, 'm'))
    assert.ok(up.stdout.includes(`http://127.0.0.1:${port}/v1`), up.stdout)
    assert.match(up.stdout, new RegExp(`^ +curl http://127\\.0\\.0\\.1:${port}/v1/chat/completions .*Bearer ${apiKey}`, 'm'))
    assert.match(up.stdout, /^stage plan \(llama-server\):$/m)

    const models = await fetch(`http://127.0.0.1:${port}/v1/models`, { headers: { authorization: `Bearer ${apiKey}` } })
    assert.equal(models.status, 200, 'the printed key opens the API')
    const modelName = (await models.json() as { data: Array<{ id: string }> }).data[0].id

    const status = await runMesh(['status', '--json'], { env: { LLMESH_HOME: join(home, 'up', 'coordinator') } })
    assert.equal(status.code, 0, status.stderr)
    const report = JSON.parse(status.stdout) as StatusReport
    assert.equal(report.members.filter(m => m.role === 'worker' && m.state === 'alive').length, 2)
    // One pipeline or a replica group per worker, as the layout predicts faster: either way both
    // workers hold layers, and the coordinator keeps layer 0 in every group.
    const groups = report.engine?.groups ?? []
    const workers = groups.flatMap(group => group.plan.stages.filter(stage => stage.role === 'worker' && stage.layerCount > 0).map(stage => stage.nodeId))
    assert.equal(new Set(workers).size, 2, report.engine?.planTable ?? 'no plan')
    assert.ok(groups.every(group => group.plan.stages[0].role === 'coordinator' && group.plan.stages[0].layerCount > 0), report.engine?.planTable ?? 'no plan')

    // Distributed equals local: the same greedy completion through the split model as in one process.
    const completion = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: modelName, prompt: PROMPT, max_tokens: COMPLETION_TOKENS, temperature: 0 })
    })
    assert.equal(completion.status, 200)
    const distributed = (await completion.json() as { choices: Array<{ text: string }> }).choices[0].text
    assert.ok(distributed.length > 0)
    assert.equal(distributed, await localCompletion(model.path))

    const pids = await descendantPids(up.child.pid ?? -1)
    assert.ok(pids.length >= 3, `mesh up runs its three nodes (found ${pids.length} processes)`)
    up.child.kill('SIGINT')
    assert.equal(await up.exited, 0, up.stderr)
    assert.match(up.stdout, /^stopped$/m)
    assert.deepEqual(runningPids(pids), [], 'no process started by mesh up outlives it')
  })

  it('refuses an API port that is taken, before starting anything', async () => {
    const taken = await listenOnFreePort()
    try {
      const result = await runMesh(['up', '--api-port', String(portOf(taken)), '--model', model.path], { env: { LLMESH_HOME: home } })
      assert.equal(result.code, 1)
      assert.equal(result.stderr.trim().split('\n').at(-1), `mesh: port ${portOf(taken)} on 127.0.0.1 is already in use; stop the program using it or pass another port with --api-port`)
    } finally {
      await new Promise(resolve => taken.close(resolve))
    }
  })
})
