import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { ChatMessage } from '../../engine/chat-template.js'
import { DEFAULT_CHAT_MAX_TOKENS } from '../constants.js'
import { UnsupportedRequestError } from '../errors.js'
import { sendEventStream } from '../event-stream.js'
import { generateOptions, type Generation, type SamplingParams } from '../generation.js'
import { admitGeneration } from '../admitted-generation.js'
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
}

const bodySchema = {
  type: 'object',
  properties: {
    ...samplingProperties,
    max_completion_tokens: { type: ['integer', 'null'], minimum: 1, maximum: samplingProperties.max_tokens.maximum },
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
    logprobs: { type: 'null' },
    finish_reason: { type: 'string' }
  },
  required: ['index', 'message', 'logprobs', 'finish_reason']
})

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
    if (served.chatTemplate instanceof Error) throw served.chatTemplate
    const prompt = served.chatTemplate.render(templateMessages(body.messages))
    const options = generateOptions(body, body.max_completion_tokens ?? body.max_tokens ?? DEFAULT_CHAT_MAX_TOKENS)
    const { generation, signal } = await admitGeneration(served, request, reply, prompt, options, 'messages')
    const head = { id: `chatcmpl-${randomUUID()}`, object: 'chat.completion', created: Math.floor(Date.now() / 1000), model: served.name }

    if (body.stream === true) {
      return await sendEventStream(reply, chatChunks({ ...head, object: 'chat.completion.chunk' }, generation, body.stream_options?.include_usage === true), signal)
    }
    let content = ''
    for await (const piece of generation) content += piece.text
    return {
      ...head,
      choices: [{ index: 0, message: { role: 'assistant', content }, logprobs: null, finish_reason: generation.finishReason }],
      usage: generation.usage
    }
  })
}

async function * chatChunks (head: object, generation: Generation, includeUsage: boolean): AsyncGenerator<object> {
  yield { ...head, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] }
  for await (const piece of generation) {
    // Empty pieces are tokens of a character that is not complete yet; its text comes with its last token.
    if (piece.text !== '') yield { ...head, choices: [{ index: 0, delta: { content: piece.text }, logprobs: null, finish_reason: null }] }
  }
  yield { ...head, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: generation.finishReason }] }
  if (includeUsage) yield { ...head, choices: [], usage: generation.usage }
}
