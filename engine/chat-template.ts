import { Template } from '@huggingface/jinja'
import { GgufValueType, readGgufInfo, type GgufInfo } from './gguf/index.js'

/** A call of a tool (function) in an assistant message, as chat templates expect it: arguments as an object. */
export interface ChatToolCall {
  id: string
  type: 'function'
  function: { name: string, arguments: unknown }
}

/** One message of a conversation, as chat templates expect it. */
export interface ChatMessage {
  role: string
  content: string
  /** an assistant message's tool calls */
  tool_calls?: ChatToolCall[]
  /** a tool message's answer is to this call */
  tool_call_id?: string
}

/** A tool the model may call, as OpenAI describes it and chat templates render it. */
export interface ChatTool {
  type: 'function'
  function: { name: string, description?: string, parameters?: unknown }
}

/** The model file has no chat template, so chat requests cannot be turned into a prompt. */
export class NoChatTemplateError extends Error {
  static readonly code = 'ERR_NO_CHAT_TEMPLATE'
  readonly code = NoChatTemplateError.code
  override readonly name = 'NoChatTemplateError'
}

/** The chat template could not be compiled, or failed on a conversation (templates may refuse some, e.g. roles out of order). */
export class ChatTemplateError extends Error {
  static readonly code = 'ERR_CHAT_TEMPLATE'
  readonly code = ChatTemplateError.code
  override readonly name = 'ChatTemplateError'
}

/**
 * A model's `tokenizer.chat_template`, rendered here rather than by an engine, so that every engine
 * is handed the very same prompt for a conversation.
 */
export class ChatTemplate {
  readonly #template: Template
  /** the template's Jinja source, e.g. to tell which tool-call format the model was trained on */
  readonly source: string
  readonly #bosToken: string
  readonly #eosToken: string

  constructor (source: string, specialTokens: { bos: string, eos: string }) {
    try {
      this.#template = new Template(source)
    } catch (err) {
      throw new ChatTemplateError(`the model's chat template cannot be compiled (${(err as Error).message}); use the completions endpoint or a model with a working template`, { cause: err })
    }
    this.source = source
    this.#bosToken = specialTokens.bos
    this.#eosToken = specialTokens.eos
  }

  /** The prompt for `messages` (and the `tools` the model may call), ending where the assistant's next reply begins. */
  render (messages: readonly ChatMessage[], tools?: readonly ChatTool[]): string {
    try {
      return this.#template.render({
        messages,
        ...(tools !== undefined && tools.length > 0 ? { tools } : {}),
        add_generation_prompt: true,
        bos_token: this.#bosToken,
        eos_token: this.#eosToken
      })
    } catch (err) {
      // Template errors (raise_exception) describe the conversation's shape, never its text.
      throw new ChatTemplateError(`the model's chat template refused this conversation: ${(err as Error).message}`, { cause: err })
    }
  }
}

/** Reads the chat template of a GGUF model; throws NoChatTemplateError when the file has none. */
export async function readChatTemplate (modelPath: string): Promise<ChatTemplate> {
  const info = await readGgufInfo(modelPath)
  const source = stringValue(info, 'tokenizer.chat_template')
  if (source === undefined) {
    throw new NoChatTemplateError(`the model ${modelPath} has no chat template (tokenizer.chat_template); use the completions endpoint, or a model that has one`)
  }
  return new ChatTemplate(source, { bos: tokenText(info, 'tokenizer.ggml.bos_token_id'), eos: tokenText(info, 'tokenizer.ggml.eos_token_id') })
}

function stringValue (info: GgufInfo, key: string): string | undefined {
  const value = info.metadata.get(key)
  return value?.type === GgufValueType.STRING ? value.value : undefined
}

// The text of a special token named by id in the metadata, '' when the model has none.
function tokenText (info: GgufInfo, idKey: string): string {
  const id = info.metadata.get(idKey)?.value
  const tokens = info.metadata.get('tokenizer.ggml.tokens')
  if (typeof id !== 'number' || tokens?.type !== GgufValueType.ARRAY) return ''
  const text = tokens.value[id]
  return typeof text === 'string' ? text : ''
}
