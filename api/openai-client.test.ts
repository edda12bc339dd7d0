import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import OpenAI from 'openai'
import { loadLocalEngine, type LocalEngine } from '../engine/local-engine.js'
import { ServingEngine } from '../engine/serving-engine.js'
import { useLocalEngine } from '../engine/test-support/local-engine-fixture.js'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { BODY_LIMIT_BYTES } from './constants.js'
import { noEndBias, startTestApi, type TestApi } from './test-support/api-client.js'

/** Counts the requests the API's HTTP server received for `path`, retries included. */
function countRequests (api: TestApi, path: string): { readonly count: number } {
  const counter = { count: 0 }
  api.app.server.on('request', (request: IncomingMessage) => { if (request.url === path) counter.count++ })
  return counter
}

function clientFor (api: TestApi, maxRetries = 0): OpenAI {
  return new OpenAI({ apiKey: api.apiKey, baseURL: `${api.url}/v1`, maxRetries })
}

describe('the official openai client against the API', () => {
  let model: TestModel
  let engine: LocalEngine
  let api: TestApi
  let client: OpenAI
  let noEnd: Record<string, number>

  before(async () => {
    model = await writeTestModel()
    engine = await loadLocalEngine({ modelPath: model.path })
    api = await startTestApi(engine)
    client = clientFor(api)
    noEnd = await noEndBias(engine)
  })

  after(async () => {
    await api?.close()
    await engine?.dispose()
    await model?.remove()
  })

  const messages = [{ role: 'user' as const, content: 'Hello there. How are you today?' }]
  const prompt = 'The quick brown fox jumps over the lazy dog.'

  it('completes a non-streaming chat request', async () => {
    const completion = await client.chat.completions.create({ model: api.modelName, messages, max_tokens: 12, temperature: 0 })
    assert.equal(completion.object, 'chat.completion')
    assert.equal(completion.choices[0].message.role, 'assistant')
    assert.equal(typeof completion.choices[0].message.content, 'string')
    assert.ok(['stop', 'length'].includes(completion.choices[0].finish_reason))
    assert.ok((completion.usage?.completion_tokens ?? 0) > 0)
  })

  it('completes a streaming chat request with the same reply, and reports usage in the last chunk when asked', async () => {
    const whole = await client.chat.completions.create({ model: api.modelName, messages, max_tokens: 12, temperature: 0 })
    const stream = await client.chat.completions.create({ model: api.modelName, messages, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true } })
    let content = ''
    let finish: string | null = null
    const chunks: OpenAI.ChatCompletionChunk[] = []
    for await (const chunk of stream) {
      chunks.push(chunk)
      content += chunk.choices[0]?.delta.content ?? ''
      finish = chunk.choices[0]?.finish_reason ?? finish
    }
    assert.equal(content, whole.choices[0].message.content)
    assert.equal(finish, whole.choices[0].finish_reason)
    assert.deepEqual(chunks.at(-1)?.usage, whole.usage)
    assert.deepEqual(chunks.at(-1)?.choices, [])
    assert.ok(chunks.slice(0, -1).every(chunk => chunk.usage == null), 'only the last chunk carries usage')
  })

  it('completes text, whole and streamed alike, with max_tokens honoured exactly', async () => {
    const whole = await client.completions.create({ model: api.modelName, prompt, max_tokens: 20, temperature: 0, logit_bias: noEnd })
    assert.equal(whole.object, 'text_completion')
    assert.equal(whole.choices[0].finish_reason, 'length')
    assert.equal(whole.usage?.completion_tokens, 20)
    assert.equal(whole.usage?.total_tokens, (whole.usage?.prompt_tokens ?? 0) + 20)

    const stream = await client.completions.create({ model: api.modelName, prompt, max_tokens: 20, temperature: 0, logit_bias: noEnd, stream: true, stream_options: { include_usage: true } })
    let text = ''
    let usage: OpenAI.CompletionUsage | undefined
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? ''
      usage = chunk.usage ?? usage
    }
    assert.equal(text, whole.choices[0].text)
    assert.deepEqual(usage, whole.usage)
    // Without include_usage no chunk carries usage.
    const plain = await client.completions.create({ model: api.modelName, prompt, max_tokens: 3, temperature: 0, stream: true })
    for await (const chunk of plain) assert.equal(chunk.usage, undefined)
  })

  it('ends the reply before a stop text, which is not returned', async () => {
    const whole = await client.completions.create({ model: api.modelName, prompt, max_tokens: 40, temperature: 0, logit_bias: noEnd })
    const text = whole.choices[0].text
    assert.ok(text.length >= 12, `the model wrote too little to pick a stop text from: ${JSON.stringify(text)}`)
    const stop = text.slice(8, 11)
    const stopped = await client.completions.create({ model: api.modelName, prompt, max_tokens: 40, temperature: 0, logit_bias: noEnd, stop: [stop, 'never-generated-text'] })
    assert.equal(stopped.choices[0].text, text.slice(0, text.indexOf(stop)))
    assert.equal(stopped.choices[0].finish_reason, 'stop')
  })

  it('repeats a sampled reply for the same seed', async () => {
    const sample = async (seed: number): Promise<string> => {
      const completion = await client.chat.completions.create({ model: api.modelName, messages, max_tokens: 16, temperature: 1, seed, logit_bias: noEnd })
      return completion.choices[0].message.content ?? ''
    }
    const first = await sample(42)
    assert.equal(await sample(42), first)
    const others = new Set([first, await sample(1), await sample(2), await sample(3)])
    assert.ok(others.size > 1, 'different seeds all gave the same sampled reply')
  })

  it('surfaces every client error as the client\'s typed error with OpenAI\'s body', async () => {
    const models = await client.models.list()
    assert.deepEqual(models.data.map(m => m.id), [api.modelName])

    const wrongKey = new OpenAI({ apiKey: 'wrong', baseURL: `${api.url}/v1`, maxRetries: 0 })
    await assert.rejects(wrongKey.models.list(), (err: unknown) => err instanceof OpenAI.AuthenticationError && err.code === 'invalid_api_key')
    await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages }), (err: unknown) => err instanceof OpenAI.NotFoundError && err.param === 'model')
    await assert.rejects(client.chat.completions.create({ model: api.modelName, messages, temperature: 5 }), (err: unknown) => err instanceof OpenAI.BadRequestError && err.param === 'temperature')
    await assert.rejects(client.chat.completions.create({ model: api.modelName, messages, n: 2 }), (err: unknown) => err instanceof OpenAI.UnprocessableEntityError && err.param === 'n')
    const huge = 'x'.repeat(BODY_LIMIT_BYTES)
    await assert.rejects(client.completions.create({ model: api.modelName, prompt: huge }), (err: unknown) => {
      assert.ok(err instanceof OpenAI.APIError)
      assert.equal(err.status, 413)
      assert.equal(err.code, 'request_too_large')
      return true
    })
  })
})

describe('the openai client\'s retries against a busy or loading API', () => {
  const local = useLocalEngine()

  it('retries a 429 for a full queue after Retry-After, as often as maxRetries allows', async () => {
    const api = await startTestApi(local.engine, { maxQueue: 0 })
    try {
      // The test takes the only slot itself, as a request would: no reply of the tiny model lasts
      // the seconds the retries take.
      const release = await api.app.admission.acquire(new AbortController().signal)

      const attempts = countRequests(api, '/v1/completions')
      const started = Date.now()
      await assert.rejects(clientFor(api, 2).completions.create({ model: api.modelName, prompt: 'x', max_tokens: 2 }), (err: unknown) => {
        assert.ok(err instanceof OpenAI.RateLimitError)
        assert.equal(err.code, 'queue_full')
        assert.equal(err.headers?.get('retry-after'), '1')
        return true
      })
      assert.equal(attempts.count, 3, 'maxRetries 2 means three attempts')
      assert.ok(Date.now() - started >= 2000, 'the client waited Retry-After (1 s) before each retry')
      release()
      // Greedy and with the end tokens banned, so that the reply runs to max_tokens.
      const completion = await clientFor(api, 0).completions.create({ model: api.modelName, prompt: 'x', max_tokens: 2, temperature: 0, logit_bias: await noEndBias(local.engine) })
      assert.equal(completion.usage?.completion_tokens, 2, 'once the slot is free the same request is served')
    } finally {
      await api.close()
    }
  })

  it('retries a 503 while the local.engine loads, and succeeds once it is ready', async () => {
    const serving = new ServingEngine(local.model.path, 512)
    const api = await startTestApi(serving)
    try {
      const attempts = countRequests(api, '/v1/chat/completions')
      const client = clientFor(api, 1)
      const loading = client.chat.completions.create({ model: api.modelName, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 })
      while (attempts.count === 0) await sleep(5)
      await serving.replace(async () => await loadLocalEngine({ modelPath: local.model.path, contextSize: 512 }))
      const completion = await loading
      assert.ok((completion.usage?.completion_tokens ?? 0) > 0)
      assert.equal(attempts.count, 2, 'one 503, then one retry after Retry-After')

      await serving.markUnavailable('the test took the local.engine away')
      await assert.rejects(clientFor(api, 0).chat.completions.create({ model: api.modelName, messages: [{ role: 'user', content: 'hi' }] }), (err: unknown) => {
        assert.ok(err instanceof OpenAI.InternalServerError)
        assert.equal(err.status, 503)
        assert.ok(Number(err.headers?.get('retry-after')) > 0)
        return true
      })
    } finally {
      await api.close()
      await serving.dispose()
    }
  })
})
