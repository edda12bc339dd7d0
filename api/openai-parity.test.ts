import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import OpenAI from 'openai'
import { startLlamaServer, type LlamaServer } from '../engine/llama-server.js'
import { loadLocalEngine, type LocalEngine } from '../engine/local-engine.js'
import type { SyntheticModelOptions } from '../engine/synthetic-model/index.js'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { noEndBias, startTestApi, type TestApi } from './test-support/api-client.js'

// Needs the llama-server that `mesh setup` builds; findLlamaCppTools() says so when it is missing.

/** The local engine and llama-server on one synthetic model, each behind the API, and llama-server's own API. */
interface Engines {
  local: LocalEngine
  server: LlamaServer
  /** the official client against the API over the local engine, over llama-server, and against llama-server itself */
  clients: { local: OpenAI, server: OpenAI, llamaServer: OpenAI }
  modelName: string
  /** a logit_bias that keeps the model from ending its reply early */
  noEnd: Record<string, number>
}

/** Registers hooks that start both engines (2 slots each) on a fresh model and both APIs, and stop them all. */
function useEngines (modelOptions: Partial<SyntheticModelOptions>): { readonly current: Engines } {
  let model: TestModel | undefined
  let local: LocalEngine | undefined
  let server: LlamaServer | undefined
  const apis: TestApi[] = []
  let engines: Engines | undefined
  before(async () => {
    model = await writeTestModel(modelOptions)
    local = await loadLocalEngine({ modelPath: model.path, slots: 2 })
    server = await startLlamaServer({ modelPath: model.path, parallel: 2 })
    for (const engine of [local, server]) apis.push(await startTestApi(engine))
    const client = (baseURL: string, apiKey: string): OpenAI => new OpenAI({ apiKey, baseURL, maxRetries: 0 })
    engines = {
      local,
      server,
      clients: { local: client(`${apis[0].url}/v1`, apis[0].apiKey), server: client(`${apis[1].url}/v1`, apis[1].apiKey), llamaServer: client(`${server.httpUrl as string}/v1`, 'none') },
      modelName: apis[0].modelName,
      noEnd: await noEndBias(local)
    }
  })
  after(async () => {
    for (const api of apis) await api.close()
    await server?.dispose()
    await local?.dispose()
    await model?.remove()
  })
  return {
    get current () {
      if (engines === undefined) throw new Error('the engines are read before the before() hook ran')
      return engines
    }
  }
}

const PROMPT = 'The quick brown fox jumps over the lazy dog.'
const MESSAGES = [{ role: 'user' as const, content: 'Hello there. How are you today?' }]

/** The text, finish reason and usage of a streamed text completion, read whole. */
async function streamedCompletion (client: OpenAI, request: OpenAI.CompletionCreateParamsNonStreaming): Promise<{ text: string, finish: string | null, usage: OpenAI.CompletionUsage | undefined }> {
  const stream = await client.completions.create({ ...request, stream: true, stream_options: { include_usage: true } })
  let text = ''
  let finish: string | null = null
  let usage: OpenAI.CompletionUsage | undefined
  for await (const chunk of stream) {
    text += chunk.choices[0]?.text ?? ''
    finish = chunk.choices[0]?.finish_reason ?? finish
    usage = chunk.usage ?? usage
  }
  return { text, finish, usage }
}

function assertClose (actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= 1e-3, `${what}: ${actual} is not within 1e-3 of ${expected}`)
}

describe('text that is not whole UTF-8, from a model with a token for every byte', () => {
  const engines = useEngines({ byteTokens: 'all' })

  it('completes whole and streamed on both engines, with lone bytes as U+FFFD and max_tokens and usage exact', async () => {
    const { clients, modelName, noEnd } = engines.current
    const request = { model: modelName, prompt: PROMPT, max_tokens: 40, temperature: 0, logit_bias: noEnd }
    const answers = await Promise.all([clients.local, clients.server].map(async client => {
      const whole = await client.completions.create(request)
      return { whole, streamed: await streamedCompletion(client, request) }
    }))
    for (const { whole, streamed } of answers) {
      assert.equal(whole.choices[0].finish_reason, 'length')
      assert.equal(whole.usage?.completion_tokens, 40)
      assert.ok(whole.choices[0].text.includes('\uFFFD'), `the model was meant to emit lone bytes: ${JSON.stringify(whole.choices[0].text)}`)
      assert.deepEqual(streamed, { text: whole.choices[0].text, finish: 'length', usage: whole.usage })
    }
    assert.equal(answers[1].whole.choices[0].text, answers[0].whole.choices[0].text, 'both engines give the same text')
  })

  it('ends a reply cut in the middle of a character with U+FFFD, in chat too', async () => {
    const { clients, modelName, noEnd } = engines.current
    for (const client of [clients.local, clients.server]) {
      const contents: string[] = []
      // Every length from 1 to 12: some of them end on a lone leading byte.
      for (let tokens = 1; tokens <= 12; tokens++) {
        const request = { model: modelName, messages: MESSAGES, max_tokens: tokens, temperature: 0, logit_bias: noEnd }
        const whole = await client.chat.completions.create(request)
        assert.equal(whole.usage?.completion_tokens, tokens)
        const stream = await client.chat.completions.create({ ...request, stream: true })
        let content = ''
        for await (const chunk of stream) content += chunk.choices[0]?.delta.content ?? ''
        assert.equal(content, whole.choices[0].message.content)
        contents.push(content)
      }
      assert.ok(contents.some(content => content.endsWith('\uFFFD')), `no reply ended on a lone byte: ${JSON.stringify(contents)}`)
    }
  })
})

describe('sampling controls, choices, log probabilities, structured output and tools', () => {
  // ChatML with tools: without tools it renders a conversation as plain ChatML does.
  const engines = useEngines({ chatTemplate: 'hermes-tools', ctx: 2048 })

  it('applies frequency and presence penalties as llama-server does', async () => {
    const { clients, modelName, noEnd } = engines.current
    const plain = { model: modelName, prompt: PROMPT, max_tokens: 24, temperature: 0, logit_bias: noEnd }
    const penalized = { ...plain, frequency_penalty: 1.5, presence_penalty: 0.5 }
    // One after another: an engine that batches two requests computes them with other kernels,
    // so that their logits differ in the last digits and a near tie may tip the other way.
    const local = await clients.local.completions.create(penalized)
    const server = await clients.server.completions.create(penalized)
    const own = await clients.llamaServer.completions.create(penalized)
    const unpenalized = await clients.local.completions.create(plain)
    assert.notEqual(local.choices[0].text, unpenalized.choices[0].text, 'the penalties changed nothing')
    assert.equal(server.choices[0].text, local.choices[0].text)
    assert.equal(own.choices[0].text, local.choices[0].text, 'llama-server\'s own answer')
  })

  it('adds any logit_bias from -100 to 100', async () => {
    const { clients, modelName, local: engine } = engines.current
    const favourite = engine.tokenize(' the').at(-1) as number
    const request = { model: modelName, prompt: PROMPT, max_tokens: 6, temperature: 0, logit_bias: { [favourite]: 100 } }
    for (const client of [clients.local, clients.server]) {
      const completion = await client.completions.create(request)
      assert.equal(completion.choices[0].text, ' the'.repeat(6))
    }
  })

  it('returns n choices up to the engine\'s slots, whole and streamed, and refuses more with the limit', async () => {
    const { clients, modelName, noEnd } = engines.current
    for (const client of [clients.local, clients.server]) {
      const request = { model: modelName, messages: MESSAGES, max_tokens: 8, temperature: 1, seed: 5, logit_bias: noEnd, n: 2 }
      const whole = await client.chat.completions.create(request)
      assert.deepEqual(whole.choices.map(choice => [choice.index, choice.finish_reason]), [[0, 'length'], [1, 'length']])
      assert.equal(whole.usage?.completion_tokens, 16)
      const stream = await client.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } })
      const finished: number[] = []
      let usage: OpenAI.CompletionUsage | undefined
      for await (const chunk of stream) {
        for (const choice of chunk.choices) if (choice.finish_reason != null) finished.push(choice.index)
        usage = chunk.usage ?? usage
      }
      assert.deepEqual(finished.sort(), [0, 1])
      assert.equal(usage?.completion_tokens, 16)
      await assert.rejects(client.chat.completions.create({ ...request, n: 3 }), (err: unknown) => {
        assert.ok(err instanceof OpenAI.UnprocessableEntityError)
        assert.equal(err.param, 'n')
        assert.match(err.message, /at most 2 choices/)
        return true
      })
    }
  })

  it('returns chat log probabilities, whole and streamed, alike on both engines and as llama-server does', async () => {
    const { clients, modelName, noEnd } = engines.current
    const request = { model: modelName, messages: MESSAGES, max_tokens: 12, temperature: 0, logit_bias: noEnd, logprobs: true, top_logprobs: 3 }
    // One after another: log probabilities of two requests llama-server batches differ by about 1e-3.
    const local = await clients.local.chat.completions.create(request)
    const server = await clients.server.chat.completions.create(request)
    const own = await clients.llamaServer.chat.completions.create(request)
    const content = local.choices[0].logprobs?.content ?? []
    assert.equal(content.length, 12)
    for (const entry of content) {
      assert.equal(entry.top_logprobs.length, 3)
      // Greedy: the chosen token is the most likely one.
      assert.equal(entry.token, entry.top_logprobs[0].token)
      assert.equal(entry.logprob, entry.top_logprobs[0].logprob)
      assert.ok(entry.logprob <= 0)
    }
    assert.equal(content.map(entry => entry.token).join(''), local.choices[0].message.content)
    for (const [other, name] of [[server, 'llmesh over llama-server'], [own, 'llama-server itself']] as const) {
      const otherContent = other.choices[0].logprobs?.content ?? []
      assert.deepEqual(otherContent.map(entry => entry.token), content.map(entry => entry.token), name)
      content.forEach((entry, i) => {
        assertClose(otherContent[i].logprob, entry.logprob, `${name}, token ${i}`)
        entry.top_logprobs.forEach((top, j) => { assertClose(otherContent[i].top_logprobs[j].logprob, top.logprob, `${name}, token ${i}, alternative ${j}`) })
      })
    }

    const stream = await clients.server.chat.completions.create({ ...request, stream: true })
    const streamed: OpenAI.ChatCompletionTokenLogprob[] = []
    for await (const chunk of stream) streamed.push(...chunk.choices[0]?.logprobs?.content ?? [])
    assert.deepEqual(streamed, server.choices[0].logprobs?.content)
  })

  it('returns text completion log probabilities in OpenAI\'s arrays, whole and streamed', async () => {
    const { clients, modelName, noEnd } = engines.current
    const request = { model: modelName, prompt: PROMPT, max_tokens: 10, temperature: 0, logit_bias: noEnd, logprobs: 2 }
    for (const client of [clients.local, clients.server]) {
      const whole = await client.completions.create(request)
      const { text, logprobs } = whole.choices[0]
      assert.ok(logprobs != null)
      assert.equal(logprobs.tokens?.length, 10)
      assert.equal(logprobs.tokens?.join(''), text)
      assert.equal(logprobs.text_offset?.[0], 0)
      logprobs.tokens?.forEach((token, i) => {
        assert.equal(text.slice(logprobs.text_offset?.[i]).startsWith(token), true)
        const top = logprobs.top_logprobs?.[i] ?? {}
        assert.ok(Object.keys(top).length >= 1 && Object.keys(top).length <= 2)
        assert.equal(top[token], logprobs.token_logprobs?.[i])
      })
      const stream = await client.completions.create({ ...request, stream: true })
      const tokens: string[] = []
      const offsets: number[] = []
      for await (const chunk of stream) {
        tokens.push(...chunk.choices[0]?.logprobs?.tokens ?? [])
        offsets.push(...chunk.choices[0]?.logprobs?.text_offset ?? [])
      }
      assert.deepEqual(tokens, logprobs.tokens)
      assert.deepEqual(offsets, logprobs.text_offset)
    }
  })

  it('holds chat replies to a strict JSON schema and to any JSON object, alike on both engines, whole and streamed', async () => {
    const { clients, modelName } = engines.current
    const schema = {
      type: 'object',
      properties: { ok: { type: 'boolean' }, color: { type: 'string', enum: ['red', 'green', 'blue'] } },
      required: ['ok', 'color'],
      additionalProperties: false
    }
    const request = { model: modelName, messages: MESSAGES, max_tokens: 40, temperature: 0, response_format: { type: 'json_schema' as const, json_schema: { name: 'answer', schema, strict: true } } }
    const conforms = (content: string | null): void => {
      const value = JSON.parse(content ?? '') as Record<string, unknown>
      assert.deepEqual(Object.keys(value), ['ok', 'color'])
      assert.equal(typeof value.ok, 'boolean')
      assert.ok(['red', 'green', 'blue'].includes(value.color as string))
    }
    const replies: string[] = []
    for (const client of [clients.local, clients.server]) {
      const whole = await client.chat.completions.create(request)
      assert.equal(whole.choices[0].finish_reason, 'stop')
      conforms(whole.choices[0].message.content)
      replies.push(whole.choices[0].message.content ?? '')
    }
    assert.equal(replies[1], replies[0], 'both engines give the same JSON')
    // llama-server's own grammar lets whitespace follow the value, so its reply may run to max_tokens; the JSON still conforms.
    conforms((await clients.llamaServer.chat.completions.create(request)).choices[0].message.content)
    const stream = await clients.server.chat.completions.create({ ...request, stream: true })
    let content = ''
    for await (const chunk of stream) content += chunk.choices[0]?.delta.content ?? ''
    assert.equal(content, replies[0])

    const objects = await Promise.all([clients.local, clients.server].map(async client => await client.chat.completions.create({ ...request, max_tokens: 60, response_format: { type: 'json_object' } })))
    assert.equal(objects[1].choices[0].message.content, objects[0].choices[0].message.content)
    const object = objects[0].choices[0]
    if (object.finish_reason === 'stop') assert.equal(typeof JSON.parse(object.message.content ?? ''), 'object')
    else assert.ok(object.message.content?.startsWith('{'))

    await assert.rejects(clients.local.chat.completions.create({ ...request, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { id: { type: 'string', pattern: '^[a-z]+$' } } } } } }), (err: unknown) => {
      assert.ok(err instanceof OpenAI.BadRequestError)
      assert.equal(err.param, 'response_format.json_schema.schema')
      assert.match(err.message, /"pattern" at \/properties\/id/)
      return true
    })
  })

  it('calls a tool when required or named, alike on both engines, whole and streamed, and takes tool results back', async () => {
    const { clients, modelName } = engines.current
    const tools = [
      { type: 'function' as const, function: { name: 'get_weather', description: 'The weather in a city', parameters: { type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Oslo'] }, metric: { type: 'boolean' } }, required: ['city', 'metric'], additionalProperties: false } } },
      { type: 'function' as const, function: { name: 'get_time', parameters: { type: 'object', properties: { zone: { type: 'string', enum: ['UTC', 'CET'] } }, required: ['zone'], additionalProperties: false } } }
    ]
    const conforms = (call: OpenAI.ChatCompletionMessageToolCall | undefined, name?: string): void => {
      assert.ok(call?.type === 'function')
      assert.ok(call.id.length > 0)
      const args = JSON.parse(call.function.arguments) as Record<string, unknown>
      if (call.function.name === 'get_weather') {
        assert.ok(['Paris', 'Oslo'].includes(args.city as string) && typeof args.metric === 'boolean', call.function.arguments)
      } else {
        assert.equal(call.function.name, 'get_time')
        assert.ok(['UTC', 'CET'].includes(args.zone as string), call.function.arguments)
      }
      if (name !== undefined) assert.equal(call.function.name, name)
    }
    const base = { model: modelName, messages: MESSAGES, max_tokens: 200, temperature: 0, tools }
    const answers: string[] = []
    for (const client of [clients.local, clients.server]) {
      for (const tool_choice of ['required', { type: 'function', function: { name: 'get_time' } }] as const) {
        const whole = await client.chat.completions.create({ ...base, tool_choice })
        const choice = whole.choices[0]
        assert.equal(choice.finish_reason, 'tool_calls')
        assert.equal(choice.message.content, null)
        assert.equal(choice.message.tool_calls?.length, 1)
        const call = choice.message.tool_calls?.[0] as OpenAI.ChatCompletionMessageFunctionToolCall
        conforms(call, typeof tool_choice === 'string' ? undefined : 'get_time')
        answers.push(`${call.function.name} ${call.function.arguments}`)

        const stream = await client.chat.completions.create({ ...base, tool_choice, stream: true })
        const streamed = { name: '', args: '', id: '', finish: '' as string | null }
        for await (const chunk of stream) {
          for (const delta of chunk.choices[0]?.delta.tool_calls ?? []) {
            assert.equal(delta.index, 0)
            streamed.id += delta.id ?? ''
            streamed.name += delta.function?.name ?? ''
            streamed.args += delta.function?.arguments ?? ''
          }
          streamed.finish = chunk.choices[0]?.finish_reason ?? streamed.finish
        }
        assert.deepEqual([streamed.name, streamed.args, streamed.finish], [call.function.name, call.function.arguments, 'tool_calls'])
        assert.ok(streamed.id.startsWith('call_'))
      }
    }
    assert.deepEqual(answers.slice(2), answers.slice(0, 2), 'both engines make the same calls')

    // The call and its result go back into the conversation, rendered by the model's template.
    const [first] = (await clients.local.chat.completions.create({ ...base, tool_choice: 'required' })).choices[0].message.tool_calls ?? []
    const conversation = [...MESSAGES, { role: 'assistant' as const, content: null, tool_calls: [first] }, { role: 'tool' as const, tool_call_id: first.id, content: '{"temperature": 21}' }]
    for (const client of [clients.local, clients.server]) {
      const followUp = await client.chat.completions.create({ ...base, messages: conversation, tool_choice: 'none', max_tokens: 8 })
      assert.equal(followUp.choices[0].message.tool_calls, undefined)
      assert.ok((followUp.usage?.prompt_tokens ?? 0) > 30)
    }
  })
})
