import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { DEFAULT_COMPLETION_MAX_TOKENS } from '../constants.js'
import { InvalidRequestError } from '../errors.js'
import { sendEventStream } from '../event-stream.js'
import { generateOptions, type Generation, type SamplingParams } from '../generation.js'
import { admitGeneration } from '../admitted-generation.js'
import { completionResponseSchema, errorResponses, samplingProperties } from '../schemas.js'
import { checkModelName, type ServedModel } from '../served-model.js'

interface CompletionBody extends SamplingParams {
  model: string
  prompt: string | string[] | number[]
  stream?: boolean | null
  stream_options?: { include_usage?: boolean } | null
}

const bodySchema = {
  type: 'object',
  properties: {
    ...samplingProperties,
    prompt: {
      anyOf: [
        { type: 'string' },
        { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 1 },
        { type: 'array', items: { type: 'integer', minimum: 0 }, minItems: 1 }
      ]
    }
  },
  required: ['model', 'prompt']
} as const

const choiceSchema = {
  type: 'object',
  properties: {
    text: { type: 'string' },
    index: { type: 'integer' },
    logprobs: { type: 'null' },
    finish_reason: { type: 'string' }
  },
  required: ['text', 'index', 'logprobs', 'finish_reason']
} as const

const responseSchema = completionResponseSchema(choiceSchema)

/** The prompt as text or as token ids; a one-string array is OpenAI's batch of one. */
function promptOf (body: CompletionBody): string | number[] {
  if (typeof body.prompt === 'string') return body.prompt
  if (typeof body.prompt[0] === 'string') return body.prompt[0]
  return body.prompt as number[]
}

/** Fastify plugin: POST /completions, OpenAI's text completions, streamed or whole. */
export async function completionRoutes (app: FastifyInstance, served: ServedModel): Promise<void> {
  app.post<{ Body: CompletionBody }>('/completions', {
    schema: { body: bodySchema, response: { 200: responseSchema, ...errorResponses } }
  }, async (request, reply) => {
    const { body } = request
    checkModelName(served, body.model)
    request.modelName = served.name
    const prompt = promptOf(body)
    if (prompt.length === 0) throw new InvalidRequestError('the prompt is empty; give some text to complete', 'prompt')
    const options = generateOptions(body, body.max_tokens ?? DEFAULT_COMPLETION_MAX_TOKENS)
    const { generation, signal } = await admitGeneration(served, request, reply, prompt, options, 'prompt')
    const head = { id: `cmpl-${randomUUID()}`, object: 'text_completion', created: Math.floor(Date.now() / 1000), model: served.name }

    if (body.stream === true) {
      return await sendEventStream(reply, completionChunks(head, generation, body.stream_options?.include_usage === true), signal)
    }
    let text = ''
    for await (const piece of generation) text += piece.text
    return { ...head, choices: [{ text, index: 0, logprobs: null, finish_reason: generation.finishReason }], usage: generation.usage }
  })
}

async function * completionChunks (head: object, generation: Generation, includeUsage: boolean): AsyncGenerator<object> {
  for await (const piece of generation) {
    // Empty pieces are tokens of a character that is not complete yet; its text comes with its last token.
    if (piece.text !== '') yield { ...head, choices: [{ text: piece.text, index: 0, logprobs: null, finish_reason: null }] }
  }
  yield { ...head, choices: [{ text: '', index: 0, logprobs: null, finish_reason: generation.finishReason }] }
  if (includeUsage) yield { ...head, choices: [], usage: generation.usage }
}
