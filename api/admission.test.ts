import assert from 'node:assert/strict'
import { request as httpRequest, type ClientRequest } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import { loadLocalEngine, type LocalEngine } from '../engine/local-engine.js'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { Registry } from 'prom-client'
import { AdmissionQueue } from './admission.js'
import { QueueFullError } from './errors.js'
import { ApiMetrics } from './metrics.js'
import { noEndBias, startTestApi, type TestApi } from './test-support/api-client.js'

const never = new AbortController().signal

describe('AdmissionQueue', () => {
  it('admits up to its slots at once, queues the rest in arrival order and refuses past the queue depth', async () => {
    const queue = new AdmissionQueue({ slots: () => 2, maxQueue: 2, retryAfterSeconds: 1 })
    const first = await queue.acquire(never)
    await queue.acquire(never)
    assert.deepEqual([queue.active, queue.depth], [2, 0])
    const order: string[] = []
    const third = queue.acquire(never).then(release => { order.push('third'); return release })
    const fourth = queue.acquire(never).then(release => { order.push('fourth'); return release })
    assert.deepEqual([queue.active, queue.depth], [2, 2])
    await assert.rejects(queue.acquire(never), (err: unknown) => err instanceof QueueFullError && err.retryAfterSeconds === 1 && err.statusCode === 429)

    first()
    first() // releasing twice frees one slot only
    await third
    assert.deepEqual([queue.active, queue.depth, order], [2, 1, ['third']])
    ;(await third)()
    await fourth
    assert.deepEqual(order, ['third', 'fourth'])
  })

  it('drops a waiter whose client left, and tells when it is idle', async () => {
    const queue = new AdmissionQueue({ slots: () => 1, maxQueue: 4, retryAfterSeconds: 1 })
    const release = await queue.acquire(never)
    const leaving = new AbortController()
    const waiting = queue.acquire(leaving.signal)
    assert.equal(queue.depth, 1)
    leaving.abort(new Error('client gone'))
    await assert.rejects(waiting, /client gone/)
    assert.equal(queue.depth, 0)

    let idle = false
    const whenIdle = queue.idle().then(() => { idle = true })
    await sleep(10)
    assert.equal(idle, false)
    release()
    await whenIdle
    assert.deepEqual([queue.active, queue.depth], [0, 0])
  })

  it('follows the slots of the engine serving now, when a replaced engine has fewer or more', async () => {
    let slots = 2
    const queue = new AdmissionQueue({ slots: () => slots, maxQueue: 4, retryAfterSeconds: 1 })
    const running = [await queue.acquire(never), await queue.acquire(never)]
    const admitted: number[] = []
    const waiting = [3, 4, 5].map(async n => await queue.acquire(never).then(release => { admitted.push(n); return release }))

    slots = 1 // a one-slot engine took over: both running requests must end before the next starts
    running[0]()
    await sleep(10)
    assert.deepEqual([queue.active, queue.depth, admitted], [1, 3, []])
    running[1]()
    const third = await waiting[0]
    assert.deepEqual([queue.active, queue.depth, admitted], [1, 2, [3]])

    slots = 3 // an engine with more slots: the next release lets every waiter in
    third()
    await Promise.all(waiting)
    assert.deepEqual([queue.active, queue.depth, admitted], [2, 0, [3, 4, 5]])
  })
})

describe('a client that disconnects', () => {
  let model: TestModel
  let engine: LocalEngine
  let api: TestApi
  let noEnd: Record<string, number>

  before(async () => {
    model = await writeTestModel()
    engine = await loadLocalEngine({ modelPath: model.path, contextSize: 8192 })
    noEnd = await noEndBias(engine)
    api = await startTestApi(engine, { maxQueue: 4 })
  })

  after(async () => {
    await api?.close()
    await engine?.dispose()
    await model?.remove()
  })

  it('frees its engine slot for the next queued request within 2 s', async () => {
    const body = JSON.stringify({ model: api.modelName, prompt: 'hold the slot', max_tokens: 8000, temperature: 0, logit_bias: noEnd, stream: true })
    const { port } = new URL(api.url)
    const streaming = httpRequest({ host: '127.0.0.1', port, path: '/v1/completions', method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${api.apiKey}` } })
    const firstEvent = new Promise<void>((resolve, reject) => {
      streaming.once('response', response => { response.once('data', () => { resolve() }) })
      streaming.once('error', reject)
    })
    streaming.end(body)
    await firstEvent
    assert.equal(api.app.admission.active, 1)

    const queued = api.post('/v1/completions', { model: api.modelName, prompt: 'next', max_tokens: 2, temperature: 0 })
    while (api.app.admission.depth === 0) await sleep(5)
    assert.deepEqual([api.app.admission.active, api.app.admission.depth], [1, 1], 'the stream still generates, the next request waits')

    const disconnected = performance.now()
    streaming.destroy()
    const answer = await queued
    const admittedAfterMs = performance.now() - disconnected
    assert.equal(answer.status, 200)
    assert.ok(admittedAfterMs < 2000, `the queued request waited ${admittedAfterMs.toFixed(0)} ms after the disconnect`)
    const usage = (await answer.json() as { usage: { completion_tokens: number } }).usage
    assert.equal(usage.completion_tokens, 2)
    while (api.app.admission.active > 0) await sleep(5)
    assert.deepEqual([api.app.admission.active, api.app.admission.depth], [0, 0])
  })

  it('is counted as 499 (client closed request), whether it left while queued or mid-stream', async () => {
    const registry = new Registry()
    const counted = await startTestApi(engine, { maxQueue: 4, metrics: { metrics: new ApiMetrics(registry), registry, public: true } })
    try {
      const { port } = new URL(counted.url)
      const send = (body: object): ClientRequest => {
        const request = httpRequest({ host: '127.0.0.1', port, path: '/v1/completions', method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${counted.apiKey}` } })
        request.on('error', () => {})
        request.end(JSON.stringify({ model: counted.modelName, ...body }))
        return request
      }
      const streaming = send({ prompt: 'hold the slot', max_tokens: 8000, temperature: 0, logit_bias: noEnd, stream: true })
      await new Promise(resolve => streaming.once('response', response => response.once('data', resolve)))
      const queued = send({ prompt: 'wait', max_tokens: 2 })
      while (counted.app.admission.depth === 0) await sleep(5)
      queued.destroy()
      streaming.destroy()
      const answered = async (): Promise<string[]> => (await registry.metrics()).split('\n').filter(line => line.startsWith('llmesh_http_requests_total{'))
      const deadline = Date.now() + 5000
      while ((await answered()).length === 0 && Date.now() < deadline) await sleep(10)
      await sleep(100)
      assert.deepEqual(await answered(), ['llmesh_http_requests_total{route="/v1/completions",method="POST",status="499"} 2'])
    } finally {
      await counted.close()
    }
  })
})
