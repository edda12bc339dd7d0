import type { GeneratedPiece, TokenLogprob } from '../engine/engine.js'

/** One token's entry in a chat reply's `logprobs.content`, as OpenAI shapes it. */
export interface ChatTokenLogprob {
  token: string
  logprob: number
  bytes: number[]
  top_logprobs: Array<{ token: string, logprob: number, bytes: number[] }>
}

/** A text completion's `logprobs`, as OpenAI shapes it: parallel arrays, one entry per token. */
export interface CompletionLogprobs {
  tokens: string[]
  token_logprobs: number[]
  top_logprobs: Array<Record<string, number>>
  text_offset: number[]
}

const entry = (token: TokenLogprob): { token: string, logprob: number, bytes: number[] } => ({ token: token.text, logprob: token.logprob, bytes: token.bytes })

/** The chat `logprobs.content` entries of `pieces` (pieces without log probabilities give none). */
export function chatLogprobs (pieces: readonly GeneratedPiece[]): ChatTokenLogprob[] {
  return pieces.flatMap(piece => piece.logprobs === undefined ? [] : [{ ...entry(piece.logprobs), top_logprobs: piece.logprobs.top.map(entry) }])
}

/** The completion `logprobs` of `pieces`, whose text starts at `textOffset` of the reply. */
export function completionLogprobs (pieces: readonly GeneratedPiece[], textOffset: number): CompletionLogprobs {
  const result: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] }
  let offset = textOffset
  for (const piece of pieces) {
    if (piece.logprobs !== undefined) {
      result.tokens.push(piece.logprobs.text)
      result.token_logprobs.push(piece.logprobs.logprob)
      result.top_logprobs.push(Object.fromEntries(piece.logprobs.top.map(top => [top.text, top.logprob])))
      result.text_offset.push(offset)
    }
    offset += piece.text.length
  }
  return result
}

const tokenSchema = {
  type: 'object',
  properties: { token: { type: 'string' }, logprob: { type: 'number' }, bytes: { type: 'array', items: { type: 'integer' } } },
  required: ['token', 'logprob', 'bytes']
} as const

/** Response schema of a chat choice's `logprobs`: null, or OpenAI's `{content, refusal}`. */
export const chatLogprobsSchema = {
  anyOf: [
    { type: 'null' },
    {
      type: 'object',
      properties: {
        content: { type: 'array', items: { ...tokenSchema, properties: { ...tokenSchema.properties, top_logprobs: { type: 'array', items: tokenSchema } }, required: [...tokenSchema.required, 'top_logprobs'] } },
        refusal: { type: 'null' }
      },
      required: ['content', 'refusal']
    }
  ]
} as const

/** Response schema of a text completion choice's `logprobs`: null, or OpenAI's parallel arrays. */
export const completionLogprobsSchema = {
  anyOf: [
    { type: 'null' },
    {
      type: 'object',
      properties: {
        tokens: { type: 'array', items: { type: 'string' } },
        token_logprobs: { type: 'array', items: { type: 'number' } },
        top_logprobs: { type: 'array', items: { type: 'object', additionalProperties: { type: 'number' } } },
        text_offset: { type: 'array', items: { type: 'integer' } }
      },
      required: ['tokens', 'token_logprobs', 'top_logprobs', 'text_offset']
    }
  ]
} as const
