import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Engine, FinishReason, GeneratedPiece, GenerateInput, GenerateOptions, TokenizeOptions } from '../engine/engine.js'
import { writeGgufFile } from '../engine/gguf/index.js'
import { loadLocalEngine, type LocalEngine } from '../engine/local-engine.js'
import { ServingEngine } from '../engine/serving-engine.js'
import { DEFAULT_SYNTHETIC_MODEL_OPTIONS, SPECIAL_TOKENS, syntheticModelContent } from '../engine/synthetic-model/index.js'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { readEvents, startTestApi, type TestApi } from './test-support/api-client.js'

const PROMPT = 'The quick brown fox jumps over the lazy dog.'

/** A real engine whose generations are recorded: how many started, and when they end, their pieces and whether aborted. */
class RecordingEngine implements Engine {
  started = 0
  readonly ended: Array<{ pieces: number, aborted: boolean }> = []
  constructor (private readonly inner: LocalEngine) {}
  get name (): string { return this.inner.name }
  get modelPath (): string { return this.inner.modelPath }
  get threads (): number { return this.inner.threads }
  get contextSize (): number { return this.inner.contextSize }
  get slots (): number { return this.inner.slots }
  tokenize (text: string, options?: TokenizeOptions): number[] { return this.inner.tokenize(text, options) }
  async dispose (): Promise<void> { await this.inner.dispose() }

  async * generate (input: GenerateInput, options: GenerateOptions): AsyncGenerator<GeneratedPiece, FinishReason, undefined> {
    this.started++
    const inner: AsyncIterator<GeneratedPiece, FinishReason> = this.inner.generate(input, options)
    let pieces = 0
    try {
      for (;;) {
        const step = await inner.next()
        if (step.done === true) return step.value
        pieces++
        yield step.value
      }
    } finally {
      await inner.return?.()
      this.ended.push({ pieces, aborted: options.signal?.aborted === true })
    }
  }
}

interface ErrorBody { error: { message: string, type: string, param: string | null, code: string | null } }

async function expectError (response: Response, status: number, type: string): Promise<ErrorBody['error']> {
  assert.equal(response.status, status)
  const body = await response.json() as ErrorBody
  assert.equal(body.error.type, type)
  assert.equal(typeof body.error.message, 'string')
  assert.ok('param' in body.error && 'code' in body.error)
  return body.error
}

describe('OpenAI-compatible API over the local engine', () => {
  let model: TestModel
  let engine: RecordingEngine
  let api: TestApi
  let eos: number

  before(async () => {
    model = await writeTestModel()
    engine = new RecordingEngine(await loadLocalEngine({ modelPath: model.path }))
    api = await startTestApi(engine)
    eos = engine.tokenize(SPECIAL_TOKENS.eos, { special: true }).at(-1) as number
  })

  after(async () => {
    await api?.close()
    await engine?.dispose()
    await model?.remove()
  })

  it('answers /health without an API key', async () => {
    const response = await fetch(`${api.url}/health`)
    assert.equal(response.status, 200)
    assert.deepEqual(await response.json(), { status: 'ok', model: api.modelName, engine: 'local' })
  })

  it('refuses /v1 requests without the right Bearer key', async () => {
    const missing = await fetch(`${api.url}/v1/models`)
    assert.equal((await expectError(missing, 401, 'authentication_error')).code, 'missing_api_key')
    const wrong = await fetch(`${api.url}/v1/models`, { headers: { authorization: 'Bearer not-the-key' } })
    assert.equal((await expectError(wrong, 401, 'authentication_error')).code, 'invalid_api_key')
    const refused = await api.post('/v1/completions', { model: api.modelName, prompt: PROMPT }, { headers: { authorization: `Bearer ${api.apiKey}x` } })
    await expectError(refused, 401, 'authentication_error')
    assert.equal(engine.ended.length, 0, 'a refused request must not reach the engine')
  })

  it('lists the served model and answers 404 for another one or an unknown route', async () => {
    const models = await fetch(`${api.url}/v1/models`, { headers: { authorization: `Bearer ${api.apiKey}` } })
    assert.equal(models.status, 200)
    const list = await models.json() as { object: string, data: Array<{ id: string, object: string }> }
    assert.equal(list.object, 'list')
    assert.deepEqual(list.data.map(m => [m.id, m.object]), [[api.modelName, 'model']])

    const other = await api.post('/v1/chat/completions', { model: 'gpt-4', messages: [{ role: 'user', content: 'hi' }] })
    const error = await expectError(other, 404, 'not_found_error')
    assert.equal(error.code, 'model_not_found')
    assert.equal(error.param, 'model')

    await expectError(await api.post('/v1/embeddings', { model: api.modelName, input: 'x' }), 404, 'not_found_error')
  })

  it('answers invalid bodies with 400 and unsupported requests with 422, naming the field, without echoing the prompt', async () => {
    const chat = [{ role: 'user', content: PROMPT }]
    const cases: Array<[string, unknown, string | null, number]> = [
      ['/v1/chat/completions', { model: api.modelName }, 'messages', 400],
      ['/v1/chat/completions', { model: api.modelName, messages: [] }, 'messages', 400],
      ['/v1/completions', { model: api.modelName, prompt: PROMPT, temperature: 'hot' }, 'temperature', 400],
      ['/v1/completions', { model: api.modelName, prompt: PROMPT, max_tokens: 0 }, 'max_tokens', 400],
      ['/v1/completions', { model: 'm'.repeat(257), prompt: PROMPT }, 'model', 400],
      ['/v1/completions', { model: api.modelName, prompt: PROMPT, stop: Array.from({ length: 17 }, (_, i) => `s${i}`) }, 'stop', 400],
      ['/v1/completions', { model: api.modelName, prompt: PROMPT, top_p: 1.5 }, 'top_p', 400],
      ['/v1/chat/completions', { model: api.modelName, messages: chat, tools: Array.from({ length: 129 }, () => ({ type: 'function', function: { name: 'f' } })) }, 'tools', 400],
      ['/v1/chat/completions', { model: api.modelName, messages: chat, n: 2 }, 'n', 422],
      ['/v1/chat/completions', { model: api.modelName, messages: chat, tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: { type: 'function', function: { name: 'g' } } }, 'tool_choice', 400],
      // The test model's ChatML template has no place for tools.
      ['/v1/chat/completions', { model: api.modelName, messages: chat, tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools', 422],
      ['/v1/completions', { model: api.modelName, prompt: PROMPT, logit_bias: { 5: 101 } }, 'logit_bias.5', 400],
      ['/v1/completions', { model: api.modelName, prompt: PROMPT, presence_penalty: 2.5 }, 'presence_penalty', 400],
      ['/v1/chat/completions', { model: api.modelName, messages: [{ role: 'user', content: [{ type: 'image_url' }] }] }, 'messages[0].content', 422],
      // Features not served yet are refused, never silently dropped.
      ['/v1/chat/completions', { model: api.modelName, messages: chat, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: '^a+$' } } } }, 'response_format.json_schema.schema', 400],
      ['/v1/chat/completions', { model: api.modelName, messages: chat, functions: [{ name: 'f' }] }, 'functions', 422],
      ['/v1/chat/completions', { model: api.modelName, messages: chat, top_logprobs: 21, logprobs: true }, 'top_logprobs', 400],
      ['/v1/chat/completions', { model: api.modelName, messages: chat, top_logprobs: 2 }, 'top_logprobs', 400],
      ['/v1/completions', { model: api.modelName, prompt: PROMPT, echo: true }, 'echo', 422]
    ]
    for (const [path, body, param, status] of cases) {
      const error = await expectError(await api.post(path, body), status, 'invalid_request_error')
      assert.equal(error.param, param, `${JSON.stringify(body)}: ${error.message}`)
      assert.ok(!error.message.includes(PROMPT))
    }
    const broken = await fetch(`${api.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${api.apiKey}` },
      body: `{"prompt": "${PROMPT}`
    })
    assert.ok(!(await expectError(broken, 400, 'invalid_request_error')).message.includes(PROMPT))
  })

  it('streams a text completion chunk by chunk with the same text as the whole answer', async () => {
    const request = { model: api.modelName, prompt: PROMPT, max_tokens: 24, temperature: 0, logit_bias: { [eos]: -100 } }
    const whole = await (await api.post('/v1/completions', request)).json() as {
      object: string, choices: Array<{ text: string, finish_reason: string }>, usage: { prompt_tokens: number, completion_tokens: number, total_tokens: number }
    }
    assert.equal(whole.object, 'text_completion')
    assert.equal(whole.choices[0].finish_reason, 'length')
    assert.ok(whole.choices[0].text.length > 0)
    assert.deepEqual(whole.usage, { prompt_tokens: engine.tokenize(PROMPT).length, completion_tokens: 24, total_tokens: engine.tokenize(PROMPT).length + 24 })

    const response = await api.post('/v1/completions', { ...request, stream: true, stream_options: { include_usage: true } })
    assert.equal(response.status, 200)
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/)
    const events = await readEvents(response)
    assert.equal(events.at(-1), '[DONE]')
    const chunks = events.slice(0, -1) as Array<{ object: string, choices: Array<{ text: string, finish_reason: string | null }>, usage?: unknown }>
    assert.ok(chunks.length > 3, 'a completion of 24 tokens arrives in several chunks')
    assert.ok(chunks.every(c => c.object === 'text_completion'))
    assert.equal(chunks.flatMap(c => c.choices.map(choice => choice.text)).join(''), whole.choices[0].text)
    assert.equal(chunks.at(-2)?.choices[0].finish_reason, 'length')
    assert.deepEqual(chunks.at(-1)?.usage, whole.usage)
  })

  it('chats through the model\'s template, streamed and whole alike', async () => {
    const request = { model: api.modelName, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: PROMPT }], max_tokens: 16, temperature: 0 }
    const whole = await (await api.post('/v1/chat/completions', request)).json() as {
      object: string, choices: Array<{ message: { role: string, content: string }, finish_reason: string }>, usage: { prompt_tokens: number, completion_tokens: number }
    }
    assert.equal(whole.object, 'chat.completion')
    assert.equal(whole.choices[0].message.role, 'assistant')
    const templated = `<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n${PROMPT}<|im_end|>\n<|im_start|>assistant\n`
    assert.equal(whole.usage.prompt_tokens, engine.tokenize(templated, { special: true }).length)

    const events = await readEvents(await api.post('/v1/chat/completions', { ...request, stream: true }))
    assert.equal(events.at(-1), '[DONE]')
    const chunks = events.slice(0, -1) as Array<{ object: string, choices: Array<{ delta: { role?: string, content?: string }, finish_reason: string | null }> }>
    assert.ok(chunks.every(c => c.object === 'chat.completion.chunk'))
    assert.equal(chunks[0].choices[0].delta.role, 'assistant')
    assert.equal(chunks.map(c => c.choices[0].delta.content ?? '').join(''), whole.choices[0].message.content)
    assert.equal(chunks.at(-1)?.choices[0].finish_reason, whole.choices[0].finish_reason)
  })

  it('ends at a stop text and leaves it out', async () => {
    const request = { model: api.modelName, prompt: PROMPT, max_tokens: 32, temperature: 0, logit_bias: { [eos]: -100 } }
    const free = await (await api.post('/v1/completions', request)).json() as { choices: Array<{ text: string }> }
    const text = free.choices[0].text
    const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 2)
    const stopped = await (await api.post('/v1/completions', { ...request, stop })).json() as { choices: Array<{ text: string, finish_reason: string }> }
    assert.equal(stopped.choices[0].finish_reason, 'stop')
    assert.equal(stopped.choices[0].text, text.slice(0, text.indexOf(stop)))
  })

  it('cancels the generation of a client that disconnects, freeing the engine for the next request', async () => {
    const before = engine.ended.length
    const controller = new AbortController()
    const response = await api.post('/v1/completions', { model: api.modelName, prompt: PROMPT, max_tokens: 400, temperature: 0, logit_bias: { [eos]: -100 }, stream: true }, { signal: controller.signal })
    const reader = (response.body as ReadableStream<Uint8Array>).getReader()
    let received = ''
    while (received.split('\n\n').length < 4) {
      const { value, done } = await reader.read()
      assert.equal(done, false, 'the stream ended before the client could leave')
      received += new TextDecoder().decode(value)
    }
    controller.abort()
    await reader.cancel().catch(() => {})

    while (engine.ended.length === before) await sleep(10)
    const cancelled = engine.ended[before]
    assert.equal(cancelled.aborted, true)
    assert.ok(cancelled.pieces < 400, `the generation went on to ${cancelled.pieces} tokens`)

    const next = await (await api.post('/v1/completions', { model: api.modelName, prompt: PROMPT, max_tokens: 4, temperature: 0, logit_bias: { [eos]: -100 } })).json() as { usage: { completion_tokens: number } }
    assert.equal(next.usage.completion_tokens, 4)
  })

  it('cancels a whole (non-streaming) answer when its client disconnects', async () => {
    const started = engine.started
    const ended = engine.ended.length
    const controller = new AbortController()
    const request = api.post('/v1/chat/completions', { model: api.modelName, messages: [{ role: 'user', content: PROMPT }], max_tokens: 400, temperature: 0, logit_bias: { [eos]: -100 } }, { signal: controller.signal })
    while (engine.started === started) await sleep(5)
    controller.abort()
    await assert.rejects(request, { name: 'AbortError' })

    while (engine.ended.length === ended) await sleep(10)
    const cancelled = engine.ended[ended]
    assert.equal(cancelled.aborted, true)
    assert.ok(cancelled.pieces < 400, `the generation went on to ${cancelled.pieces} tokens`)
  })
})

describe('API over a model without a chat template', () => {
  let model: TestModel
  let engine: LocalEngine
  let api: TestApi

  before(async () => {
    model = await writeTestModel()
    const content = syntheticModelContent(DEFAULT_SYNTHETIC_MODEL_OPTIONS)
    const path = join(model.dir, 'no-template.gguf')
    await writeGgufFile(path, { metadata: new Map([...content.metadata].filter(([key]) => key !== 'tokenizer.chat_template')), tensors: content.tensors })
    engine = await loadLocalEngine({ modelPath: path })
    api = await startTestApi(engine)
  })

  after(async () => {
    await api?.close()
    await engine?.dispose()
    await model?.remove()
  })

  it('refuses chat with a 400 that says why, and still serves text completions', async () => {
    const chat = await api.post('/v1/chat/completions', { model: api.modelName, messages: [{ role: 'user', content: PROMPT }] })
    const error = await expectError(chat, 400, 'invalid_request_error')
    assert.match(error.message, /no chat template/)
    const completion = await api.post('/v1/completions', { model: api.modelName, prompt: PROMPT, max_tokens: 4 })
    assert.equal(completion.status, 200)
  })
})

describe('API logging', () => {
  let model: TestModel
  let engine: LocalEngine
  let api: TestApi
  const lines: string[] = []

  before(async () => {
    model = await writeTestModel()
    engine = await loadLocalEngine({ modelPath: model.path })
    api = await startTestApi(engine, { logger: { level: 'trace', stream: { write: (line: string) => { lines.push(line) } } } })
  })

  after(async () => {
    await api?.close()
    await engine?.dispose()
    await model?.remove()
  })

  it('never logs prompts or completions, in answers, streams or errors', async () => {
    // Letters only: digits of a secret could turn up by chance in ports and response times.
    const secret = 'Hello there, my secret is Quokkaplatypus.'
    const replies: string[] = []
    const chat = { model: api.modelName, messages: [{ role: 'user', content: secret }], max_tokens: 8, temperature: 0 }
    replies.push(await (await api.post('/v1/chat/completions', chat)).text())
    replies.push(await (await api.post('/v1/chat/completions', { ...chat, stream: true })).text())
    replies.push(await (await api.post('/v1/completions', { model: api.modelName, prompt: secret, max_tokens: 8, temperature: 0 })).text())
    await (await api.post('/v1/completions', { model: api.modelName, prompt: secret, top_p: 7 })).text()
    await (await api.post('/v1/completions', { model: 'other', prompt: secret })).text()
    await (await api.post('/v1/completions', { model: api.modelName, prompt: secret.repeat(200) })).text()

    assert.ok(lines.some(line => line.includes('/v1/chat/completions')), 'requests are logged')
    const log = lines.join('')
    assert.ok(!log.includes('Quokkaplatypus'), 'the prompt appears in the log')
    const completion = (JSON.parse(replies[2]) as { choices: Array<{ text: string }> }).choices[0].text
    assert.ok(completion.length >= 4)
    assert.ok(!log.includes(JSON.stringify(completion).slice(1, -1)), 'a completion appears in the log')
  })
})

describe('API over the coordinator\'s serving engine', () => {
  let model: TestModel
  let serving: ServingEngine
  let api: TestApi

  before(async () => {
    model = await writeTestModel()
    serving = new ServingEngine(model.path, 512)
    api = await startTestApi(serving, { readiness: () => ({ ready: serving.state === 'ready', state: serving.state, reason: serving.reason }) })
  })

  after(async () => {
    await api?.close()
    await serving?.dispose()
    await model?.remove()
  })

  it('answers 503 with Retry-After while no engine is loaded, and serves once one is', async () => {
    const request = { model: api.modelName, messages: [{ role: 'user', content: PROMPT }], max_tokens: 4 }
    const waiting = await api.post('/v1/chat/completions', request)
    assert.ok(Number(waiting.headers.get('retry-after')) > 0)
    await expectError(waiting, 503, 'server_error')
    const health = await fetch(`${api.url}/health`)
    assert.equal(health.status, 503)
    assert.ok(Number(health.headers.get('retry-after')) > 0)
    assert.equal((await health.json() as { status: string }).status, 'loading')

    await serving.replace(async () => await loadLocalEngine({ modelPath: model.path, contextSize: 512 }))
    const served = await api.post('/v1/chat/completions', request)
    assert.equal(served.status, 200)
    assert.equal((await fetch(`${api.url}/health`)).status, 200)
    assert.ok((await served.json() as { usage: { completion_tokens: number } }).usage.completion_tokens > 0)
  })
})
