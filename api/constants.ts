/** Tokens a text completion generates when the request gives no max_tokens (OpenAI's default). */
export const DEFAULT_COMPLETION_MAX_TOKENS = 16

/** Tokens a chat reply may take when the request gives no limit: OpenAI has none, but a context does. */
export const DEFAULT_CHAT_MAX_TOKENS = 256

/** Largest request body accepted, in bytes: long conversations fit, runaway uploads do not. */
export const BODY_LIMIT_BYTES = 4 * 1024 * 1024

/** Requests that may wait for an engine slot; one more is answered 429 at once. */
export const DEFAULT_MAX_QUEUE = 64

/** The Retry-After of a 429 for a full queue: a slot frees as soon as one reply ends. */
export const QUEUE_RETRY_AFTER_S = 1

/** The most alternatives a request may ask log probabilities for (OpenAI's top_logprobs limit). */
export const MAX_TOP_LOGPROBS = 20
