// JSON schemas shared by the OpenAI routes: request fields both completion kinds accept, usage and errors.

/** The largest max_tokens accepted: no context llmesh can run holds more. */
const MAX_TOKENS_LIMIT = 1_048_576

/** OpenAI's error body, for every 4xx and 5xx answer. */
export const errorSchema = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: {
        message: { type: 'string' },
        type: { type: 'string' },
        param: { type: ['string', 'null'] },
        code: { type: ['string', 'null'] }
      },
      required: ['message', 'type', 'param', 'code']
    }
  },
  required: ['error']
} as const

/** Response schemas for the error statuses every route may answer with. */
export const errorResponses = { '4xx': errorSchema, '5xx': errorSchema } as const

/** Token counts of a request. */
export const usageSchema = {
  type: 'object',
  properties: {
    prompt_tokens: { type: 'integer' },
    completion_tokens: { type: 'integer' },
    total_tokens: { type: 'integer' }
  },
  required: ['prompt_tokens', 'completion_tokens', 'total_tokens']
} as const

/** Request fields of chat and text completions: the model, sampling, stop texts and streaming. */
export const samplingProperties = {
  model: { type: 'string', minLength: 1, maxLength: 256 },
  max_tokens: { type: ['integer', 'null'], minimum: 1, maximum: MAX_TOKENS_LIMIT },
  temperature: { type: ['number', 'null'], minimum: 0, maximum: 2 },
  top_p: { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 1 },
  seed: { type: ['integer', 'null'], minimum: 0, maximum: 4294967295 },
  stop: {
    anyOf: [
      { type: 'string' },
      { type: 'array', items: { type: 'string', maxLength: 256 }, maxItems: 16 },
      { type: 'null' }
    ]
  },
  n: { type: ['integer', 'null'], minimum: 1, maximum: 128 },
  presence_penalty: { type: ['number', 'null'], minimum: -2, maximum: 2 },
  frequency_penalty: { type: ['number', 'null'], minimum: -2, maximum: 2 },
  logit_bias: {
    type: ['object', 'null'],
    propertyNames: { pattern: '^[0-9]+$' },
    additionalProperties: { type: 'number', minimum: -100, maximum: 100 }
  },
  stream: { type: ['boolean', 'null'] },
  stream_options: {
    type: ['object', 'null'],
    properties: { include_usage: { type: 'boolean' } }
  },
  user: { type: 'string', maxLength: 256 }
} as const

/** The schema of a whole (non-streamed) OpenAI response: the shared envelope around `choices`. */
export function completionResponseSchema<Choice extends object> (choiceSchema: Choice) {
  return {
    type: 'object',
    properties: {
      id: { type: 'string' },
      object: { type: 'string' },
      created: { type: 'integer' },
      model: { type: 'string' },
      choices: { type: 'array', items: choiceSchema },
      usage: usageSchema
    },
    required: ['id', 'object', 'created', 'model', 'choices', 'usage']
  } as const
}
