import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { DEFAULT_COMPLETION_MAX_TOKENS, MAX_TOP_LOGPROBS } from '../constants.js'
import { InvalidRequestError } from '../errors.js'
import { sendEventStream } from '../event-stream.js'
import { generateOptions, refuseUnsupported, type Generation, type SamplingParams } from '../generation.js'
import { admitGenerations } from '../admitted-generation.js'
import { interleave, readChoices } from '../choices.js'
import { completionLogprobs, completionLogprobsSchema } from '../logprobs.js'
import type { GeneratedPiece } from '../../engine/engine.js'
import { completionResponseSchema, errorResponses, samplingProperties } from '../schemas.js'
import { checkModelName, type ServedModel } from '../served-model.js'

interface CompletionBody extends SamplingParams {
  model: string
  logprobs?: number | null
  prompt: string | string[] | number[]
  stream?: boolean | null
  stream_options?: { include_usage?: boolean } | null
}

const bodySchema = {
  type: 'object',
  properties: {
    ...samplingProperties,
    logprobs: { type: ['integer', 'null'], minimum: 0, maximum: MAX_TOP_LOGPROBS },
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
    logprobs: completionLogprobsSchema,
    finish_reason: { type: 'string' }
  },
  required: ['text', 'index', 'logprobs', 'finish_reason']
} as const

const responseSchema = completionResponseSchema(choiceSchema)

/** Text completion request fields llmesh does not serve yet: refused rather than ignored. */
const COMPLETION_NOT_YET: Parameters<typeof refuseUnsupported>[1] = {
  echo: [value => value === true, 'llmesh does not echo the prompt; leave echo out or false'],
  suffix: [value => value !== '', 'llmesh does not insert text before a suffix; leave suffix out'],
  best_of: [value => value !== 1, 'llmesh returns the choices it generates; leave best_of out or 1']
}

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
    refuseUnsupported(body, COMPLETION_NOT_YET)
    const prompt = promptOf(body)
    if (prompt.length === 0) throw new InvalidRequestError('the prompt is empty; give some text to complete', 'prompt')
    const options = {
      ...generateOptions(body, body.max_tokens ?? DEFAULT_COMPLETION_MAX_TOKENS),
      ...(body.logprobs != null ? { logprobs: body.logprobs } : {})
    }
    const { generations, signal } = await admitGenerations(served, request, reply, prompt, options, 'prompt', body.n ?? 1)
    const head = { id: `cmpl-${randomUUID()}`, object: 'text_completion', created: Math.floor(Date.now() / 1000), model: served.name }
    const withLogprobs = options.logprobs !== undefined

    if (body.stream === true) {
      return await sendEventStream(reply, completionChunks(head, generations, withLogprobs, body.stream_options?.include_usage === true), signal)
    }
    const choices = await readChoices(generations)
    return {
      ...head,
      choices: choices.map((pieces, index) => ({
        text: pieces.map(piece => piece.text).join(''),
        index,
        logprobs: withLogprobs ? completionLogprobs(pieces, 0) : null,
        finish_reason: generations[index].finishReason
      })),
      usage: generations[0].usage
    }
  })
}

async function * completionChunks (head: object, generations: readonly Generation[], withLogprobs: boolean, includeUsage: boolean): AsyncGenerator<object> {
  // Pieces without text are tokens of a character that is not complete yet: they go out with the token that completes it.
  const held: GeneratedPiece[][] = generations.map(() => [])
  const offsets = generations.map(() => 0)
  const chunk = (index: number, pieces: readonly GeneratedPiece[], finishReason: string | null): object => {
    const text = pieces.map(piece => piece.text).join('')
    const logprobs = withLogprobs && pieces.length > 0 ? completionLogprobs(pieces, offsets[index]) : null
    offsets[index] += text.length
    return { ...head, choices: [{ text, index, logprobs, finish_reason: finishReason }] }
  }
  for await (const event of interleave(generations)) {
    const { index } = event
    if ('piece' in event) {
      held[index].push(event.piece)
      if (event.piece.text !== '') yield chunk(index, held[index].splice(0), null)
    } else {
      yield chunk(index, held[index].splice(0), generations[index].finishReason)
    }
  }
  if (includeUsage) yield { ...head, choices: [], usage: generations[0].usage }
}
