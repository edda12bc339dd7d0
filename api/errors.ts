/** OpenAI's error types, which its clients show to the user. */
export type OpenAiErrorType = 'invalid_request_error' | 'authentication_error' | 'permission_error' | 'not_found_error' | 'rate_limit_error' | 'server_error'

/** The body of every error answer, as OpenAI's clients parse it. */
export interface OpenAiErrorBody {
  error: {
    message: string
    type: OpenAiErrorType
    param: string | null
    code: string | null
  }
}

/** An error the API answers with its own HTTP status and an OpenAI-shaped body. */
export abstract class ApiError extends Error {
  abstract readonly statusCode: number
  abstract readonly type: OpenAiErrorType
  /** when set, sent as the Retry-After header (seconds), which OpenAI's clients honour */
  readonly retryAfterSeconds: number | undefined

  /** `param` names the request field at fault; `code` is OpenAI's machine-readable code */
  constructor (message: string, readonly param: string | null = null, readonly code: string | null = null) {
    super(message)
  }

  /** The OpenAI-shaped body for this error. */
  toBody (): OpenAiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } }
  }
}

/** The request body is malformed or asks for something the API does not support (HTTP 400). */
export class InvalidRequestError extends ApiError {
  readonly statusCode = 400
  readonly type = 'invalid_request_error'
  override readonly name = 'InvalidRequestError'
}

/** The request is well formed but asks for something llmesh does not do, e.g. n > 1 or tool calls (HTTP 422). */
export class UnsupportedRequestError extends ApiError {
  readonly statusCode = 422
  readonly type = 'invalid_request_error'
  override readonly name = 'UnsupportedRequestError'
}

/** The request body is larger than the API accepts (HTTP 413). */
export class PayloadTooLargeError extends ApiError {
  readonly statusCode = 413
  readonly type = 'invalid_request_error'
  override readonly name = 'PayloadTooLargeError'
}

/** The Bearer API key is missing or wrong (HTTP 401). */
export class AuthenticationError extends ApiError {
  readonly statusCode = 401
  readonly type = 'authentication_error'
  override readonly name = 'AuthenticationError'
}

/** A browser page of an origin the API was not configured for (HTTP 403). */
export class ForbiddenOriginError extends ApiError {
  readonly statusCode = 403
  readonly type = 'permission_error'
  override readonly name = 'ForbiddenOriginError'
}

/** The route or the model asked for does not exist (HTTP 404). */
export class NotFoundError extends ApiError {
  readonly statusCode = 404
  readonly type = 'not_found_error'
  override readonly name = 'NotFoundError'
}

/** The client sends too many requests, or the admission queue is full (HTTP 429). */
export class RateLimitError extends ApiError {
  readonly statusCode = 429
  readonly type = 'rate_limit_error'
  override readonly name: string = 'RateLimitError'

  constructor (message: string, override readonly retryAfterSeconds: number, code = 'rate_limit_exceeded') {
    super(message, null, code)
  }
}

/** Every engine slot is busy and the admission queue is full (HTTP 429). */
export class QueueFullError extends RateLimitError {
  override readonly name = 'QueueFullError'

  constructor (message: string, retryAfterSeconds: number) {
    super(message, retryAfterSeconds, 'queue_full')
  }
}

/** No engine can serve right now, e.g. while the model loads or the cluster re-plans (HTTP 503). */
export class ServiceUnavailableError extends ApiError {
  readonly statusCode = 503
  readonly type = 'server_error'
  override readonly name = 'ServiceUnavailableError'

  constructor (message: string, override readonly retryAfterSeconds: number, code: string | null = null) {
    super(message, null, code)
  }
}

/** The engine failed to generate (HTTP 500). */
export class EngineFailureError extends ApiError {
  readonly statusCode = 500
  readonly type = 'server_error'
  override readonly name = 'EngineFailureError'
}
