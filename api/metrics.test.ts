import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Registry } from 'prom-client'
import type { FastifyInstance } from 'fastify'
import type { LevelDatastore } from 'datastore-level'
import { loadLocalEngine, type LocalEngine } from '../engine/local-engine.js'
import { ObservedEngine } from '../engine/observed-engine.js'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { AuditLedger } from '../node/audit-ledger.js'
import { dataDir, ensureDataDir, openDatastore } from '../node/data-dir.js'
import { waitFor } from '../tools/wait-for.js'
import { ApiMetrics } from './metrics.js'
import { createApiServer } from './server.js'

const API_KEY = 'metrics-test-key-0123456789'
const MODEL = 'test-model'

interface Served {
  url: string
  app: FastifyInstance
}

async function serve (engine: LocalEngine, registry: Registry, metricsPublic: boolean, ledger?: AuditLedger): Promise<Served> {
  const metrics = new ApiMetrics(registry)
  const app = await createApiServer({
    engine: new ObservedEngine(engine, metrics),
    apiKey: API_KEY,
    modelName: MODEL,
    metrics: { metrics, registry, public: metricsPublic },
    audit: ledger === undefined ? undefined : { ledger, log: () => {} }
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  return { url: `http://127.0.0.1:${address.port}`, app }
}

async function post (url: string, body: unknown): Promise<Response> {
  return await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` }, body: JSON.stringify(body) })
}

describe('API metrics and audit', () => {
  let model: TestModel
  let engine: LocalEngine
  let home: string
  let store: LevelDatastore
  let ledger: AuditLedger
  let registry: Registry
  let served: Served

  before(async () => {
    model = await writeTestModel()
    engine = await loadLocalEngine({ modelPath: model.path })
    home = await mkdtemp(join(tmpdir(), 'llmesh-api-metrics-'))
    const dir = dataDir(home)
    await ensureDataDir(dir)
    store = await openDatastore(dir)
    ledger = new AuditLedger(store)
    registry = new Registry()
    served = await serve(engine, registry, false, ledger)
  })

  after(async () => {
    await served?.app.close()
    await store?.close()
    await engine?.dispose()
    await model?.remove()
    if (home !== undefined) await rm(home, { recursive: true, force: true })
  })

  it('GET /metrics needs the API key unless configured public', async () => {
    assert.equal((await fetch(`${served.url}/metrics`)).status, 401)
    const withKey = await fetch(`${served.url}/metrics`, { headers: { authorization: `Bearer ${API_KEY}` } })
    assert.equal(withKey.status, 200)
    assert.match(withKey.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)

    const open = await serve(engine, new Registry(), true)
    try {
      assert.equal((await fetch(`${open.url}/metrics`)).status, 200)
      assert.equal((await fetch(`${open.url}/v1/models`)).status, 401, '--metrics-public opens /metrics only')
    } finally {
      await open.app.close()
    }
  })

  it('counts requests by route template, times tokens and counts them, and audits each /v1 request', async () => {
    const whole = await post(`${served.url}/v1/completions`, { model: MODEL, prompt: 'Once upon a time', max_tokens: 6, temperature: 0 })
    const wholeBody = await whole.json() as { usage: { prompt_tokens: number, completion_tokens: number } }
    assert.equal(whole.status, 200)
    const stream = await post(`${served.url}/v1/completions`, { model: MODEL, prompt: 'Once upon a time', max_tokens: 5, temperature: 0, stream: true })
    assert.equal(stream.status, 200)
    await stream.text()
    // A raw URL must never become a label value: only the template (or "unmatched") does.
    assert.equal((await post(`${served.url}/v1/secret-path-7f3a`, {})).status, 404)

    const text = await registry.metrics()
    assert.match(text, /llmesh_http_requests_total\{route="\/v1\/completions",method="POST",status="200"\} 2\n/)
    assert.match(text, /llmesh_http_requests_total\{route="unmatched",method="POST",status="404"\} 1\n/)
    assert.ok(!text.includes('secret-path-7f3a'), 'a raw URL reached the metrics')
    assert.match(text, /llmesh_time_to_first_token_seconds_count 2\n/)
    const completion = wholeBody.usage.completion_tokens + 5
    assert.match(text, new RegExp(`llmesh_inter_token_latency_seconds_count ${completion - 2}\\n`))
    assert.match(text, new RegExp(`llmesh_completion_tokens_total ${completion}\\n`))
    assert.match(text, new RegExp(`llmesh_prompt_tokens_total ${2 * wholeBody.usage.prompt_tokens}\\n`))
    assert.match(text, /llmesh_decode_tokens_per_second [\d.]+\n/)
    assert.match(text, /llmesh_queue_depth 0\n/)
    assert.match(text, /llmesh_active_streams 0\n/)
    // The local engine has one slot.
    assert.match(text, /llmesh_engine_slots 1\n/)

    // Records are appended once the response has gone out: wait for the last one.
    const records = await waitFor('three audit records', async () => { const r = await ledger.tail(10); return r.length === 3 ? r : undefined }, 5000)
    assert.deepEqual(records.map(r => [r.status, r.model, r.completionTokens]), [[200, MODEL, wholeBody.usage.completion_tokens], [200, MODEL, 5], [404, null, 0]])
    assert.equal(new Set(records.map(r => r.requestId)).size, 3)
    assert.ok(records.slice(0, 2).every(r => r.keyIdHash !== null && r.durationMs >= 0))
    assert.equal((await ledger.verify()).ok, true)
  })
})
