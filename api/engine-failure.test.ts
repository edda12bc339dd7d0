import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import OpenAI from 'openai'
import { startLlamaServer, type LlamaServer } from '../engine/llama-server.js'
import { SPECIAL_TOKENS } from '../engine/synthetic-model/index.js'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { startTestApi, type TestApi } from './test-support/api-client.js'

// Needs the llama-server that `mesh setup` builds.
describe('API when the engine fails', () => {
  let model: TestModel
  let server: LlamaServer
  let api: TestApi

  before(async () => {
    model = await writeTestModel()
    server = await startLlamaServer({ modelPath: model.path, threads: 1, listen: { socketPath: join(model.dir, 'llama-server.sock') } })
    api = await startTestApi(server)
  })

  after(async () => {
    await api?.close()
    await server?.dispose()
    await model?.remove()
  })

  it('ends a stream with an OpenAI error event when llama-server dies mid-answer, then answers 500', async () => {
    const eos = (await server.tokenize(SPECIAL_TOKENS.eos, { special: true })).at(-1) as number
    const request = { model: api.modelName, prompt: 'The quick brown fox', max_tokens: 400, temperature: 0, logit_bias: { [eos]: -100 }, stream: true }
    const response = await api.post('/v1/completions', request)
    assert.equal(response.status, 200)
    const reader = (response.body as ReadableStream<Uint8Array>).getReader()
    const decoder = new TextDecoder()
    let text = ''
    let killed = false
    for (;;) {
      const { value, done } = await reader.read()
      if (done === true) break
      text += decoder.decode(value, { stream: true })
      if (!killed && text.split('\n\n').length > 3) {
        process.kill(server.pid as number, 'SIGKILL')
        killed = true
      }
    }
    assert.ok(killed, 'the stream ended before llama-server could be killed')
    const events = text.split('\n\n').filter(block => block.startsWith('data: ')).map(block => block.slice('data: '.length))
    assert.notEqual(events.at(-1), '[DONE]')
    const last = JSON.parse(events.at(-1) as string) as { error: { type: string, message: string } }
    assert.equal(last.error.type, 'server_error')
    assert.match(last.error.message, /llama-server/)

    const after = await api.post('/v1/completions', { model: api.modelName, prompt: 'x', max_tokens: 2 })
    assert.equal(after.status, 500)
    assert.equal((await after.json() as { error: { type: string } }).error.type, 'server_error')

    // The official client retries a 500 (here once) and then throws its typed error.
    let attempts = 0
    api.app.server.on('request', () => { attempts++ })
    const client = new OpenAI({ apiKey: api.apiKey, baseURL: `${api.url}/v1`, maxRetries: 1 })
    await assert.rejects(client.completions.create({ model: api.modelName, prompt: 'x', max_tokens: 2 }), (err: unknown) => {
      assert.ok(err instanceof OpenAI.InternalServerError)
      assert.equal(err.status, 500)
      assert.equal(err.type, 'server_error')
      return true
    })
    assert.equal(attempts, 2)
  })
})
