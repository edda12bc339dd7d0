// A real `mesh start` coordinator: API keys added and revoked with `mesh key` (with and without the
// node running) take effect at once and are stored only hashed; SIGTERM drains the API (new
// requests get 503, admitted ones finish) and the process exits 0.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { loadLocalEngine } from '../engine/local-engine.js'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { noEndBias } from '../api/test-support/api-client.js'
import { freePort } from '../engine/free-port.js'
import { loopbackListen, meshOk, TestCluster, waitFor, type MeshProcess } from './mesh-harness.js'

interface KeyInfo { id: string, name: string, created: string }

/** Every file under `root`, recursively, as text. */
async function contentsUnder (root: string): Promise<string> {
  const texts: string[] = []
  for (const entry of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) texts.push((await readFile(join(entry.parentPath, entry.name))).toString('latin1'))
  }
  return texts.join('\n')
}

// Tokens per drain-test request. The four requests must still be running when SIGTERM lands,
// about 0.6 s after the first: with 150 tokens (0.25-0.32 s each at ~500 tokens/s here) the
// last ones could finish first; the server then closes, and the request meant to get 503 finds
// no server. 600 tokens keep them busy for seconds after SIGTERM.
const DRAIN_TEST_TOKENS = 600

describe('the API of a running `mesh start` coordinator', () => {
  const cluster = new TestCluster()
  let model: TestModel
  let home: string
  let coordinator: MeshProcess
  let base: string
  let offlineKey: string
  let noEnd: Record<string, number>

  before(async () => {
    // Room for DRAIN_TEST_TOKENS after the prompt.
    model = await writeTestModel({ ctx: 1024 })
    const engine = await loadLocalEngine({ modelPath: model.path })
    noEnd = await noEndBias(engine)
    await engine.dispose()
    home = await cluster.home('api')
    await meshOk(home, ['init'])
    // No node runs yet: `mesh key add` writes to the datastore itself.
    offlineKey = (await meshOk(home, ['key', 'add', '--name', 'offline'])).trim()
    const port = await freePort()
    base = `http://127.0.0.1:${port}`
    coordinator = cluster.start(home, ['--role', 'coordinator', '--listen', loopbackListen('tcp'), '--no-mdns', '--model', model.path, '--engine', 'local', '--api-port', String(port), '--drain-timeout', '120s'])
    await waitFor('the engine to be ready', async () => (await fetch(`${base}/health`)).status === 200 ? true : undefined, 120_000)
  })

  after(async () => {
    await cluster.cleanup()
    await model?.remove()
  })

  const models = async (key: string): Promise<number> => (await fetch(`${base}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status

  it('accepts keys from `mesh key add` at once, lists them without the key, and refuses a revoked one', async () => {
    assert.match(offlineKey, /^sk-mesh-[A-Za-z0-9_-]{43}$/)
    assert.equal(await models(offlineKey), 200)

    const liveKey = (await meshOk(home, ['key', 'add', '--name', 'live'])).trim()
    assert.equal(await models(liveKey), 200)

    const listed = await meshOk(home, ['key', 'list', '--json'])
    const keys = JSON.parse(listed) as KeyInfo[]
    assert.deepEqual(keys.map(key => key.name), ['mesh init', 'offline', 'live'])
    assert.equal(keys[0].id, 'default')
    assert.ok(!listed.includes(offlineKey) && !listed.includes(liveKey))
    const table = await meshOk(home, ['key', 'list'])
    assert.match(table, /^ID\s+NAME\s+CREATED/)

    const live = keys.find(key => key.name === 'live') as KeyInfo
    await meshOk(home, ['key', 'revoke', live.id])
    assert.equal(await models(liveKey), 401)
    assert.equal(await models(offlineKey), 200)
    assert.equal(await models((await readFile(join(home, 'api-key'), 'utf8')).trim()), 200)

    const stored = await contentsUnder(join(home, 'datastore'))
    assert.ok(!stored.includes(offlineKey), 'the datastore holds the key itself, not only its hash')
    assert.ok(!coordinator.lines.some(line => line.includes(offlineKey) || line.includes(liveKey)), 'a key reached the log')
  })

  it('drains on SIGTERM: new requests get 503, admitted ones finish, then it exits 0', async () => {
    const request = async (stream: boolean): Promise<Response> => await fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${offlineKey}` },
      body: JSON.stringify({ model: 'model', prompt: 'Drain me', max_tokens: DRAIN_TEST_TOKENS, temperature: 0, logit_bias: noEnd, stream })
    })
    // One slot: the stream generates, the others wait in the admission queue; all are in flight.
    const streaming = await request(true)
    assert.equal(streaming.status, 200)
    const streamed = streaming.text()
    const queued = Array.from({ length: 3 }, async () => await request(false))
    // Lets the queued requests reach the server (loopback: milliseconds) before it stops admitting.
    await delay(500)

    // The drain timeout is 120 s: a loaded machine may take a while for these replies.
    const stopped = coordinator.stop('SIGTERM', 150_000)
    await coordinator.waitForLine(/SIGTERM received/)
    const refused = await request(false)
    assert.equal(refused.status, 503)
    assert.ok(Number(refused.headers.get('retry-after')) > 0)
    assert.equal((await refused.json() as { error: { code: string } }).error.code, 'server_shutting_down')

    assert.match(await streamed, /data: \[DONE\]\n\n$/)
    for (const answer of await Promise.all(queued)) {
      assert.equal(answer.status, 200)
      assert.ok((await answer.json() as { usage: { completion_tokens: number } }).usage.completion_tokens > 0)
    }
    assert.equal(await stopped, 0)
  })
})
