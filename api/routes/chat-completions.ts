import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { ChatMessage, ChatTool } from '../../engine/chat-template.js'
import type { GeneratedPiece } from '../../engine/engine.js'
import { DEFAULT_CHAT_MAX_TOKENS, MAX_TOP_LOGPROBS } from '../constants.js'
import { InvalidRequestError, UnsupportedRequestError } from '../errors.js'
import { sendEventStream } from '../event-stream.js'
import { generateOptions, refuseUnsupported, type Generation, type SamplingParams } from '../generation.js'
import { admitGenerations } from '../admitted-generation.js'
import { interleave, readChoices } from '../choices.js'
import { chatLogprobs, chatLogprobsSchema } from '../logprobs.js'
import { responseFormatSchema, responseGrammar, type ResponseFormat } from '../response-format.js'
import { parseToolCalls, ToolCallStream, toolCallFormat, toolCallGrammar, type ToolCall, type ToolCallFormat } from '../tool-calls.js'
import { completionResponseSchema, errorResponses, samplingProperties } from '../schemas.js'
import { checkModelName, type ServedModel } from '../served-model.js'

type ContentPart = { type: string, text?: string }

interface RequestToolCall { id: string, type: 'function', function: { name: string, arguments: string } }

interface ChatBody extends SamplingParams {
  model: string
  messages: Array<{ role: string, content?: string | ContentPart[] | null, tool_calls?: RequestToolCall[] | null, tool_call_id?: string }>
  max_completion_tokens?: number | null
  stream?: boolean | null
  stream_options?: { include_usage?: boolean } | null
  tools?: ChatTool[] | null
  tool_choice?: 'none' | 'auto' | 'required' | { type: 'function', function: { name: string } } | null
  parallel_tool_calls?: boolean | null
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
      items: {
        type: 'object',
        properties: {
          type: { type: 'string', enum: ['function'] },
          function: {
            type: 'object',
            properties: { name: { type: 'string', pattern: '^[a-zA-Z0-9_-]{1,64}$' }, description: { type: 'string' }, parameters: { type: 'object' }, strict: { type: ['boolean', 'null'] } },
            required: ['name']
          }
        },
        required: ['type', 'function']
      }
    },
    tool_choice: {
      anyOf: [
        { type: 'string', enum: ['none', 'auto', 'required'] },
        { type: 'object', properties: { type: { type: 'string', enum: ['function'] }, function: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] } }, required: ['type', 'function'] },
        { type: 'null' }
      ]
    },
    parallel_tool_calls: { type: ['boolean', 'null'] },
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
          name: { type: 'string' },
          tool_calls: {
            type: ['array', 'null'],
            items: {
              type: 'object',
              properties: {
                id: { type: 'string' },
                type: { type: 'string', enum: ['function'] },
                function: { type: 'object', properties: { name: { type: 'string' }, arguments: { type: 'string' } }, required: ['name', 'arguments'] }
              },
              required: ['id', 'type', 'function']
            }
          },
          tool_call_id: { type: 'string' }
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
      properties: {
        role: { type: 'string' },
        content: { type: ['string', 'null'] },
        tool_calls: {
          type: 'array',
          items: {
            type: 'object',
            properties: { id: { type: 'string' }, type: { type: 'string' }, function: { type: 'object', properties: { name: { type: 'string' }, arguments: { type: 'string' } }, required: ['name', 'arguments'] } },
            required: ['id', 'type', 'function']
          }
        }
      },
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

/**
 * The messages as chat templates take them: text content only, `developer` read as `system`,
 * tool call arguments as objects (as real templates expect; a string that is not JSON stays one).
 */
function templateMessages (messages: ChatBody['messages']): ChatMessage[] {
  return messages.map((message, index) => {
    const parts = typeof message.content === 'string' ? [{ type: 'text', text: message.content }] : message.content ?? []
    const other = parts.find(part => part.type !== 'text')
    if (other !== undefined) {
      throw new UnsupportedRequestError(`messages[${index}] has a content part of type ${JSON.stringify(other.type)}; only text is supported`, `messages[${index}].content`, 'unsupported_content')
    }
    const toolCalls = message.tool_calls ?? []
    return {
      role: message.role === 'developer' ? 'system' : message.role,
      content: parts.map(part => part.text ?? '').join(''),
      ...(toolCalls.length > 0 ? { tool_calls: toolCalls.map(call => ({ ...call, function: { name: call.function.name, arguments: jsonOrText(call.function.arguments) } })) } : {}),
      ...(message.tool_call_id !== undefined ? { tool_call_id: message.tool_call_id } : {})
    }
  })
}

function jsonOrText (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

/** The tools a reply may call and how: none, freely (auto), or one of them by grammar (required, or a named one). */
function toolUse (body: ChatBody): { tools: ChatTool[], forced: ChatTool[] | undefined } {
  const tools = body.tools ?? []
  const choice = body.tool_choice ?? 'auto'
  if (tools.length === 0) {
    if (choice !== 'auto' && choice !== 'none') throw new InvalidRequestError('tool_choice needs tools to choose from', 'tool_choice')
    return { tools: [], forced: undefined }
  }
  if (choice === 'none') return { tools: [], forced: undefined }
  if (choice === 'auto') return { tools, forced: undefined }
  if (choice === 'required') return { tools, forced: tools }
  const named = tools.filter(tool => tool.function.name === choice.function.name)
  if (named.length === 0) throw new InvalidRequestError(`tool_choice names the function ${JSON.stringify(choice.function.name)}, which is not among the tools`, 'tool_choice')
  return { tools, forced: named }
}

/** An assistant message, with the tool calls its text holds when tools were offered. */
function assistantMessage (text: string, format: ToolCallFormat | undefined, parallel: boolean): { message: { role: 'assistant', content: string | null, tool_calls?: ToolCall[] }, called: boolean } {
  const parsed = format === undefined ? undefined : parseToolCalls(text, format)
  if (parsed === undefined) return { message: { role: 'assistant', content: text }, called: false }
  return { message: { role: 'assistant', content: parsed.content === '' ? null : parsed.content, tool_calls: callsAllowed(parsed.calls, parallel) }, called: true }
}

// parallel_tool_calls false: the first call only.
function callsAllowed (calls: ToolCall[], parallel: boolean): ToolCall[] {
  return parallel ? calls : calls.slice(0, 1)
}

/** Fastify plugin: POST /chat/completions, OpenAI's chat completions, streamed or whole. */
export async function chatCompletionRoutes (app: FastifyInstance, served: ServedModel): Promise<void> {
  app.post<{ Body: ChatBody }>('/chat/completions', {
    schema: { body: bodySchema, response: { 200: responseSchema, ...errorResponses } }
  }, async (request, reply) => {
    const { body } = request
    checkModelName(served, body.model)
    request.modelName = served.name
    refuseUnsupported(body, CHAT_NOT_YET)
    if (served.chatTemplate instanceof Error) throw served.chatTemplate
    const { tools, forced } = toolUse(body)
    const format = tools.length > 0 ? toolCallFormat(served.chatTemplate.source) : undefined
    const messages = templateMessages(body.messages)
    const prompt = served.chatTemplate.render(messages, tools)
    // A template that ignores tools leaves the model unaware of them: it could only call one by chance.
    if (tools.length > 0 && forced === undefined && prompt === served.chatTemplate.render(messages)) {
      throw new UnsupportedRequestError('the model\'s chat template does not render tools, so the model cannot know them; use tool_choice "required" or a named function (the call is then held to the tools by a grammar), or a model whose template supports tools', 'tools', 'unsupported_feature')
    }
    if (body.top_logprobs != null && body.logprobs !== true) throw new InvalidRequestError('top_logprobs needs logprobs: true', 'top_logprobs')
    if (forced !== undefined && (body.response_format?.type ?? 'text') !== 'text') {
      throw new InvalidRequestError('a reply cannot be both a forced tool call and response_format JSON; leave one out', 'response_format')
    }
    const options = {
      ...generateOptions(body, body.max_completion_tokens ?? body.max_tokens ?? DEFAULT_CHAT_MAX_TOKENS),
      ...(body.logprobs === true ? { logprobs: body.top_logprobs ?? 0 } : {}),
      grammar: forced !== undefined && format !== undefined ? await toolCallGrammar(forced, format) : await responseGrammar(body.response_format)
    }
    const { generations, signal } = await admitGenerations(served, request, reply, prompt, options, 'messages', body.n ?? 1)
    const head = { id: `chatcmpl-${randomUUID()}`, object: 'chat.completion', created: Math.floor(Date.now() / 1000), model: served.name }
    const withLogprobs = options.logprobs !== undefined

    if (body.stream === true) {
      return await sendEventStream(reply, chatChunks({ ...head, object: 'chat.completion.chunk' }, generations, { withLogprobs, format, parallel: body.parallel_tool_calls !== false, includeUsage: body.stream_options?.include_usage === true }), signal)
    }
    const choices = await readChoices(generations)
    return {
      ...head,
      choices: choices.map((pieces, index) => {
        const { message, called } = assistantMessage(pieces.map(piece => piece.text).join(''), format, body.parallel_tool_calls !== false)
        return {
          index,
          message,
          logprobs: withLogprobs ? { content: chatLogprobs(pieces), refusal: null } : null,
          finish_reason: called ? 'tool_calls' : generations[index].finishReason
        }
      }),
      usage: generations[0].usage
    }
  })
}

interface ChunkOptions {
  withLogprobs: boolean
  /** how the model writes tool calls, when it was offered tools */
  format: ToolCallFormat | undefined
  /** false: pass on the first tool call only */
  parallel: boolean
  includeUsage: boolean
}

async function * chatChunks (head: object, generations: readonly Generation[], options: ChunkOptions): AsyncGenerator<object> {
  const logprobs = (pieces: readonly GeneratedPiece[]): object | null => options.withLogprobs && pieces.length > 0 ? { content: chatLogprobs(pieces), refusal: null } : null
  const chunk = (index: number, delta: object, pieces: readonly GeneratedPiece[], finishReason: string | null = null): object =>
    ({ ...head, choices: [{ index, delta, logprobs: logprobs(pieces), finish_reason: finishReason }] })
  for (let index = 0; index < generations.length; index++) yield chunk(index, { role: 'assistant', content: '' }, [])
  // Pieces whose text is not passed on yet: tokens of an incomplete character, or text that may be a tool call.
  const held: GeneratedPiece[][] = generations.map(() => [])
  const calls = generations.map(() => options.format === undefined ? undefined : new ToolCallStream(options.format))
  for await (const event of interleave(generations)) {
    const { index } = event
    if ('piece' in event) {
      held[index].push(event.piece)
      if (event.piece.text === '') continue
      const content = calls[index]?.push(event.piece.text) ?? held[index].map(piece => piece.text).join('')
      if (content !== '') yield chunk(index, { content }, held[index].splice(0))
      continue
    }
    const ended = calls[index]?.end() ?? { content: '', calls: [] }
    if (ended.content !== '' || held[index].length > 0) yield chunk(index, { content: ended.content }, held[index].splice(0))
    // OpenAI's shape: each call's id and name first, then its arguments.
    for (const [i, call] of callsAllowed(ended.calls, options.parallel).entries()) {
      yield chunk(index, { tool_calls: [{ index: i, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }] }, [])
      yield chunk(index, { tool_calls: [{ index: i, function: { arguments: call.function.arguments } }] }, [])
    }
    yield chunk(index, {}, [], ended.calls.length > 0 ? 'tool_calls' : generations[index].finishReason)
  }
  if (options.includeUsage) yield { ...head, choices: [], usage: generations[0].usage }
}
