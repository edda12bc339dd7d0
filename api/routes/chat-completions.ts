import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { ChatMessage } from '../../engine/chat-template.js'
import type { GeneratedPiece } from '../../engine/engine.js'
import { DEFAULT_CHAT_MAX_TOKENS, MAX_TOP_LOGPROBS } from '../constants.js'
import { InvalidRequestError, UnsupportedRequestError } from '../errors.js'
import { sendEventStream } from '../event-stream.js'
import { generateOptions, refuseUnsupported, type Generation, type SamplingParams } from '../generation.js'
import { admitGenerations } from '../admitted-generation.js'
import { interleave, readChoices } from '../choices.js'
import { chatLogprobs, chatLogprobsSchema } from '../logprobs.js'
import { responseFormatSchema, responseGrammar, type ResponseFormat } from '../response-format.js'
import { completionResponseSchema, errorResponses, samplingProperties } from '../schemas.js'
import { checkModelName, type ServedModel } from '../served-model.js'

type ContentPart = { type: string, text?: string }

interface ChatBody extends SamplingParams {
  model: string
  messages: Array<{ role: string, content?: string | ContentPart[] | null }>
  max_completion_tokens?: number | null
  stream?: boolean | null
  stream_options?: { include_usage?: boolean } | null
  tools?: unknown[] | null
  tool_choice?: unknown
  logprobs?: boolean | null
  top_logprobs?: number | null
  response_format?: ResponseFormat | null
}

const bodySchema = {
  type: 'object',
  properties: {
    ...samplingProperties,
    max_completion_tokens: { type: ['integer', 'null'], minimum: 1, maximum: samplingProperties.max_tokens.maximum },
    logprobs: { type: ['boolean', 'null'] },
    response_format: responseFormatSchema,
    top_logprobs: { type: ['integer', 'null'], minimum: 0, maximum: MAX_TOP_LOGPROBS },
    tools: {
      type: ['array', 'null'],
      maxItems: 128,
      items: { type: 'object', properties: { type: { type: 'string' }, function: { type: 'object' } }, required: ['type'] }
    },
    tool_choice: { anyOf: [{ type: 'string', enum: ['none', 'auto', 'required'] }, { type: 'object' }, { type: 'null' }] },
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        properties: {
          role: { type: 'string', enum: ['system', 'developer', 'user', 'assistant', 'tool'] },
          content: {
            anyOf: [
              { type: 'string' },
              { type: 'array', items: { type: 'object', properties: { type: { type: 'string' }, text: { type: 'string' } }, required: ['type'] } },
              { type: 'null' }
            ]
          },
          name: { type: 'string' }
        },
        required: ['role']
      }
    }
  },
  required: ['model', 'messages']
} as const

const responseSchema = completionResponseSchema({
  type: 'object',
  properties: {
    index: { type: 'integer' },
    message: {
      type: 'object',
      properties: { role: { type: 'string' }, content: { type: 'string' } },
      required: ['role', 'content']
    },
    logprobs: chatLogprobsSchema,
    finish_reason: { type: 'string' }
  },
  required: ['index', 'message', 'logprobs', 'finish_reason']
})

/** Chat request fields llmesh does not serve yet: refused rather than ignored. */
const CHAT_NOT_YET: Parameters<typeof refuseUnsupported>[1] = {
  functions: [() => true, 'function calls are not supported by llmesh yet'],
  function_call: [value => value !== 'none', 'function calls are not supported by llmesh yet'],
  audio: [() => true, 'llmesh generates text only'],
  modalities: [value => !Array.isArray(value) || value.some(kind => kind !== 'text'), 'llmesh generates text only'],
  prediction: [() => true, 'llmesh does not use predicted outputs']
}

/** The messages as chat templates take them: text content only, `developer` read as `system`. */
function templateMessages (messages: ChatBody['messages']): ChatMessage[] {
  return messages.map((message, index) => {
    const parts = typeof message.content === 'string' ? [{ type: 'text', text: message.content }] : message.content ?? []
    const other = parts.find(part => part.type !== 'text')
    if (other !== undefined) {
      throw new UnsupportedRequestError(`messages[${index}] has a content part of type ${JSON.stringify(other.type)}; only text is supported`, `messages[${index}].content`, 'unsupported_content')
    }
    return { role: message.role === 'developer' ? 'system' : message.role, content: parts.map(part => part.text ?? '').join('') }
  })
}

/** Fastify plugin: POST /chat/completions, OpenAI's chat completions, streamed or whole. */
export async function chatCompletionRoutes (app: FastifyInstance, served: ServedModel): Promise<void> {
  app.post<{ Body: ChatBody }>('/chat/completions', {
    schema: { body: bodySchema, response: { 200: responseSchema, ...errorResponses } }
  }, async (request, reply) => {
    const { body } = request
    checkModelName(served, body.model)
    request.modelName = served.name
    if ((body.tools?.length ?? 0) > 0 && body.tool_choice !== 'none') {
      throw new UnsupportedRequestError('tool calls are not supported by llmesh yet; send the request without tools (or with tool_choice "none")', 'tools', 'unsupported_feature')
    }
    refuseUnsupported(body, CHAT_NOT_YET)
    if (served.chatTemplate instanceof Error) throw served.chatTemplate
    const prompt = served.chatTemplate.render(templateMessages(body.messages))
    if (body.top_logprobs != null && body.logprobs !== true) throw new InvalidRequestError('top_logprobs needs logprobs: true', 'top_logprobs')
    const options = {
      ...generateOptions(body, body.max_completion_tokens ?? body.max_tokens ?? DEFAULT_CHAT_MAX_TOKENS),
      ...(body.logprobs === true ? { logprobs: body.top_logprobs ?? 0 } : {}),
      grammar: await responseGrammar(body.response_format)
    }
    const { generations, signal } = await admitGenerations(served, request, reply, prompt, options, 'messages', body.n ?? 1)
    const head = { id: `chatcmpl-${randomUUID()}`, object: 'chat.completion', created: Math.floor(Date.now() / 1000), model: served.name }
    const withLogprobs = options.logprobs !== undefined

    if (body.stream === true) {
      return await sendEventStream(reply, chatChunks({ ...head, object: 'chat.completion.chunk' }, generations, withLogprobs, body.stream_options?.include_usage === true), signal)
    }
    const choices = await readChoices(generations)
    return {
      ...head,
      choices: choices.map((pieces, index) => ({
        index,
        message: { role: 'assistant', content: pieces.map(piece => piece.text).join('') },
        logprobs: withLogprobs ? { content: chatLogprobs(pieces), refusal: null } : null,
        finish_reason: generations[index].finishReason
      })),
      usage: generations[0].usage
    }
  })
}

async function * chatChunks (head: object, generations: readonly Generation[], withLogprobs: boolean, includeUsage: boolean): AsyncGenerator<object> {
  const logprobs = (pieces: readonly GeneratedPiece[]): object | null => withLogprobs ? { content: chatLogprobs(pieces), refusal: null } : null
  for (let index = 0; index < generations.length; index++) {
    yield { ...head, choices: [{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] }
  }
  // Pieces without text are tokens of a character that is not complete yet: they go out with the token that completes it.
  const held: GeneratedPiece[][] = generations.map(() => [])
  for await (const event of interleave(generations)) {
    const { index } = event
    if ('piece' in event) {
      held[index].push(event.piece)
      if (event.piece.text === '') continue
      const pieces = held[index].splice(0)
      yield { ...head, choices: [{ index, delta: { content: pieces.map(piece => piece.text).join('') }, logprobs: logprobs(pieces), finish_reason: null }] }
    } else {
      const pieces = held[index].splice(0)
      yield { ...head, choices: [{ index, delta: {}, logprobs: pieces.length > 0 ? logprobs(pieces) : null, finish_reason: generations[index].finishReason }] }
    }
  }
  if (includeUsage) yield { ...head, choices: [], usage: generations[0].usage }
}
