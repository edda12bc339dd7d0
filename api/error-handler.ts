import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { ChatTemplateError, NoChatTemplateError } from '../engine/chat-template.js'
import { EngineOptionsError, EngineUnavailableError } from '../engine/errors.js'
import { BODY_LIMIT_BYTES } from './constants.js'
import { ApiError, EngineFailureError, InvalidRequestError, NotFoundError, PayloadTooLargeError, ServiceUnavailableError } from './errors.js'

/** Maps anything a route throws onto the OpenAI-shaped error the client receives. */
export function toApiError (err: unknown): ApiError {
  if (err instanceof ApiError) return err
  const fastifyError = err as Partial<FastifyError>
  if (fastifyError.validation != null) {
    const [first] = fastifyError.validation
    const field = first?.instancePath.replace(/^\//, '').replace(/\//g, '.') ?? ''
    const param = field === '' ? (first?.params.missingProperty as string | undefined) ?? null : field
    return new InvalidRequestError(`invalid request: ${fastifyError.message ?? 'the body does not match the schema'}`, param)
  }
  if (fastifyError.statusCode === 413) {
    return new PayloadTooLargeError(`the request body is larger than the ${BODY_LIMIT_BYTES} bytes this API accepts; send a shorter conversation or prompt`, null, 'request_too_large')
  }
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    // Fastify's own messages (415, 413, empty body) are generic; a JSON parser's message may quote the body, so it is replaced.
    const message = fastifyError.code?.startsWith('FST_') === true ? fastifyError.message ?? '' : 'the request body is not valid JSON'
    return new InvalidRequestError(`invalid request: ${message}`, null, fastifyError.code ?? null)
  }
  if (err instanceof EngineOptionsError || err instanceof ChatTemplateError || err instanceof NoChatTemplateError) {
    return new InvalidRequestError(err.message, null, err.code)
  }
  if (err instanceof EngineUnavailableError) return new ServiceUnavailableError(err.message, err.retryAfterSeconds, err.code)
  const reason = err instanceof Error ? err.message : String(err)
  return new EngineFailureError(`the engine failed to generate: ${reason}`, null, (err as { code?: string }).code ?? null)
}

/** Fastify error handler: answers with OpenAI's error body and logs only the error's kind, never request text. */
export async function openAiErrorHandler (err: unknown, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const apiError = toApiError(err)
  if (reply.raw.destroyed) {
    request.log.info('the client closed the connection; its generation was cancelled')
  } else if (apiError.statusCode >= 500) {
    request.log.error({ error: (err as Error).name, code: apiError.code }, 'request failed')
  }
  if (apiError.retryAfterSeconds !== undefined) void reply.header('retry-after', String(apiError.retryAfterSeconds))
  await reply.code(apiError.statusCode).send(apiError.toBody())
}

/** Fastify not-found handler: unknown routes get OpenAI's 404 body. */
export async function openAiNotFoundHandler (request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const error = new NotFoundError(`unknown request URL: ${request.method} ${request.url.split('?')[0]}; see GET /v1/models and POST /v1/chat/completions`, null, 'unknown_url')
  await reply.code(error.statusCode).send(error.toBody())
}
