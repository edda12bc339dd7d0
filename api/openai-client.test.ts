import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import OpenAI from 'openai'
import { loadLocalEngine, type LocalEngine } from '../engine/local-engine.js'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { startTestApi, type TestApi } from './test-support/api-client.js'

describe('the official openai client against the API', () => {
  let model: TestModel
  let engine: LocalEngine
  let api: TestApi
  let client: OpenAI

  before(async () => {
    model = await writeTestModel()
    engine = await loadLocalEngine({ modelPath: model.path })
    api = await startTestApi(engine)
    client = new OpenAI({ apiKey: api.apiKey, baseURL: `${api.url}/v1`, maxRetries: 0 })
  })

  after(async () => {
    await api?.close()
    await engine?.dispose()
    await model?.remove()
  })

  const messages = [{ role: 'user' as const, content: 'Hello there. How are you today?' }]

  it('completes a non-streaming chat request', async () => {
    const completion = await client.chat.completions.create({ model: api.modelName, messages, max_tokens: 12, temperature: 0 })
    assert.equal(completion.object, 'chat.completion')
    assert.equal(completion.choices[0].message.role, 'assistant')
    assert.equal(typeof completion.choices[0].message.content, 'string')
    assert.ok(['stop', 'length'].includes(completion.choices[0].finish_reason))
    assert.ok((completion.usage?.completion_tokens ?? 0) > 0)
  })

  it('completes a streaming chat request with the same reply, and reports usage when asked', async () => {
    const whole = await client.chat.completions.create({ model: api.modelName, messages, max_tokens: 12, temperature: 0 })
    const stream = await client.chat.completions.create({ model: api.modelName, messages, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true } })
    let content = ''
    let finish: string | null = null
    let usage: OpenAI.CompletionUsage | null | undefined
    for await (const chunk of stream) {
      content += chunk.choices[0]?.delta.content ?? ''
      finish = chunk.choices[0]?.finish_reason ?? finish
      usage = chunk.usage ?? usage
    }
    assert.equal(content, whole.choices[0].message.content)
    assert.equal(finish, whole.choices[0].finish_reason)
    assert.deepEqual(usage, whole.usage)
  })

  it('lists the model and surfaces API errors as the client\'s typed errors', async () => {
    const models = await client.models.list()
    assert.deepEqual(models.data.map(m => m.id), [api.modelName])
    const wrongKey = new OpenAI({ apiKey: 'wrong', baseURL: `${api.url}/v1`, maxRetries: 0 })
    await assert.rejects(wrongKey.models.list(), OpenAI.AuthenticationError)
    await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages }), OpenAI.NotFoundError)
    await assert.rejects(client.chat.completions.create({ model: api.modelName, messages, n: 2 }), OpenAI.BadRequestError)
  })
})
