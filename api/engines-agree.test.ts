import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startLlamaServer, type LlamaServer } from '../engine/llama-server.js'
import { loadLocalEngine, type LocalEngine } from '../engine/local-engine.js'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { readEvents, startTestApi, type TestApi } from './test-support/api-client.js'

// Needs the llama-server that `mesh setup` builds; findLlamaCppTools() says so when it is missing.
describe('the local engine and llama-server (the cluster engine without workers) through the API', () => {
  let model: TestModel
  let local: LocalEngine
  let server: LlamaServer
  let localApi: TestApi
  let serverApi: TestApi
  // A random-weight model strings lone UTF-8 bytes together (openai-parity.test.ts covers those);
  // banning those tokens keeps these comparisons on whole characters.
  let logitBias: Record<string, number>

  before(async () => {
    model = await writeTestModel()
    local = await loadLocalEngine({ modelPath: model.path })
    server = await startLlamaServer({ modelPath: model.path, listen: { socketPath: join(model.dir, 'llama-server.sock') } })
    localApi = await startTestApi(local)
    serverApi = await startTestApi(server)
    logitBias = Object.fromEntries(local.partialCharacterTokens().map(token => [token, -100]))
  })

  after(async () => {
    await localApi?.close()
    await serverApi?.close()
    await server?.dispose()
    await local?.dispose()
    await model?.remove()
  })

  it('give the same greedy text completion, whole and streamed', async () => {
    const request = { model: localApi.modelName, prompt: 'The quick brown fox jumps over the lazy dog.', max_tokens: 32, temperature: 0, logit_bias: logitBias }
    const [fromLocal, fromServer] = await Promise.all([localApi, serverApi].map(async api => await (await api.post('/v1/completions', request)).json() as {
      choices: Array<{ text: string, finish_reason: string }>, usage: unknown
    }))
    assert.ok(fromLocal.choices[0].text.length > 0)
    assert.deepEqual(fromServer.choices, fromLocal.choices)
    assert.deepEqual(fromServer.usage, fromLocal.usage)

    const streamed = await readEvents(await serverApi.post('/v1/completions', { ...request, stream: true }))
    const text = (streamed.slice(0, -1) as Array<{ choices: Array<{ text: string }> }>).map(c => c.choices[0].text).join('')
    assert.equal(text, fromLocal.choices[0].text)
  })

  it('give the same greedy chat reply', async () => {
    const request = {
      model: localApi.modelName,
      messages: [{ role: 'system', content: 'You answer in one line.' }, { role: 'user', content: 'Hello there. How are you today?' }],
      max_tokens: 32,
      temperature: 0,
      logit_bias: logitBias
    }
    const [fromLocal, fromServer] = await Promise.all([localApi, serverApi].map(async api => await (await api.post('/v1/chat/completions', request)).json() as {
      choices: Array<{ message: { content: string }, finish_reason: string }>, usage: { completion_tokens: number }
    }))
    assert.ok(fromLocal.usage.completion_tokens > 0)
    assert.deepEqual(fromServer.choices, fromLocal.choices)
    assert.deepEqual(fromServer.usage, fromLocal.usage)
  })

  it('cut the reply where the context is full, alike, and refuse a prompt that fills it', async () => {
    const sentence = local.tokenize('The quick brown fox jumps over the lazy dog.').slice(1)
    const prompt = Array.from({ length: local.contextSize - 8 }, (_, i) => sentence[i % sentence.length])
    const request = { model: localApi.modelName, prompt, max_tokens: 100, temperature: 0, logit_bias: logitBias }
    const [fromLocal, fromServer] = await Promise.all([localApi, serverApi].map(async api => await (await api.post('/v1/completions', request)).json() as {
      choices: Array<{ text: string, finish_reason: string }>, usage: { completion_tokens: number }
    }))
    assert.equal(fromLocal.usage.completion_tokens, 8)
    assert.equal(fromLocal.choices[0].finish_reason, 'length')
    assert.deepEqual(fromServer.choices, fromLocal.choices)
    assert.deepEqual(fromServer.usage, fromLocal.usage)

    const full = { ...request, prompt: Array.from({ length: local.contextSize }, (_, i) => sentence[i % sentence.length]) }
    const [refusedLocal, refusedServer] = await Promise.all([localApi, serverApi].map(async api => {
      const response = await api.post('/v1/completions', full)
      return { status: response.status, body: await response.json() as { error: { code: string } } }
    }))
    assert.equal(refusedLocal.status, 400)
    assert.equal(refusedLocal.body.error.code, 'context_length_exceeded')
    assert.deepEqual(refusedServer, refusedLocal)
  })

  it('answer the same errors', async () => {
    const bad = { model: localApi.modelName, prompt: 'x', n: 3 }
    const [fromLocal, fromServer] = await Promise.all([localApi, serverApi].map(async api => {
      const response = await api.post('/v1/completions', bad)
      return { status: response.status, body: await response.json() as unknown }
    }))
    assert.equal(fromLocal.status, 422)
    assert.deepEqual(fromServer, fromLocal)
  })
})
