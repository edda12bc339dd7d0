import { randomUUID } from 'node:crypto'
import { basename } from 'node:path'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { ChatTemplateError, NoChatTemplateError, readChatTemplate, type ChatTemplate } from '../engine/chat-template.js'
import type { Engine } from '../engine/engine.js'
import { admission } from './admission.js'
import { bearerAuth, type ApiKeyVerifier } from './auth.js'
import { BODY_LIMIT_BYTES, DEFAULT_MAX_QUEUE, QUEUE_RETRY_AFTER_S } from './constants.js'
import { crossOrigin } from './cross-origin.js'
import { drain } from './drain.js'
import { openAiErrorHandler, openAiNotFoundHandler } from './error-handler.js'
import { DEFAULT_RATE_LIMITS, rateLimits, type RateLimits } from './rate-limits.js'
import { securityHeaders } from './security-headers.js'
import { chatCompletionRoutes } from './routes/chat-completions.js'
import { completionRoutes } from './routes/completions.js'
import { healthRoutes } from './routes/health.js'
import { modelRoutes } from './routes/models.js'
import type { ServedModel } from './served-model.js'
import { requestAudit, type RequestAuditOptions } from './audit.js'
import { requestMetrics, type ApiMetricsOptions } from './metrics.js'
import { requestFacts } from './request-facts.js'
import { metricsRoutes } from './routes/metrics.js'
import { dashboard, type DashboardSource } from './dashboard/dashboard.js'

export interface ApiServerOptions {
  /** the engine that generates: the local engine or the cluster's llama-server */
  engine: Engine
  /** the key clients must send as `Authorization: Bearer <key>` on /v1/* (key id "default") */
  apiKey: string
  /** further valid keys, e.g. the node's ApiKeyStore (default: none) */
  keys?: ApiKeyVerifier
  /** the model id clients name (default: the model file's name without `.gguf`) */
  modelName?: string
  /** fastify's logger setting (default: off); it logs methods, URLs and statuses, never bodies */
  logger?: FastifyServerOptions['logger']
  /** whether the engine can serve now, for GET /health (default: always ready) */
  readiness?: ServedModel['readiness']
  /** requests that may wait for a slot before the API answers 429 (default DEFAULT_MAX_QUEUE) */
  maxQueue?: number
  /** per-key and per-IP request limits (default DEFAULT_RATE_LIMITS) */
  rateLimits?: RateLimits
  /** browser origins allowed to call the API (default: none, cross-origin requests get 403) */
  corsOrigins?: readonly string[]
  /** count requests and tokens, and serve GET /metrics (default: no metrics) */
  metrics?: ApiMetricsOptions
  /** append every finished /v1 request to the audit ledger (default: no audit) */
  audit?: RequestAuditOptions
  /** serve HTTPS with this PEM key and certificate chain (default: plain HTTP) */
  tls?: { key: string, cert: string }
  /** serve the web dashboard at GET / over this cluster's status (default: none; needs `metrics`) */
  dashboard?: DashboardSource
}

/**
 * Builds the OpenAI-compatible API over one engine, ready for `listen()`. The caller owns the
 * engine: closing the server does not dispose it. The instance carries `admission` (queue depth
 * and active requests, for gauges) and `drain(timeoutMs)` (the graceful stop); every request
 * carries `apiKeyId`, `modelName` and `usage` (request-facts.ts) and `onRequestEnd(listener)`, told once when each request is answered or abandoned (metrics, audit).
 */
export async function createApiServer (options: ApiServerOptions): Promise<FastifyInstance> {
  const served: ServedModel = {
    engine: options.engine,
    name: options.modelName ?? basename(options.engine.modelPath).replace(/\.gguf$/i, ''),
    chatTemplate: await chatTemplateOrReason(options.engine.modelPath),
    created: Math.floor(Date.now() / 1000),
    readiness: options.readiness
  }
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: BODY_LIMIT_BYTES,
    // close() ends open connections, streams included (their generations are then aborted), rather
    // than waiting up to the keep-alive timeout for clients to hang up.
    forceCloseConnections: true,
    // Unique across restarts, so that the audit ledger's request ids never repeat.
    genReqId: () => randomUUID(),
    // A string where a number belongs is a client bug to report, not to paper over.
    ajv: { customOptions: { coerceTypes: false } },
    // Fastify types an HTTPS server's instance apart from an HTTP one; the routes are the same.
    ...(options.tls !== undefined ? { https: options.tls } : {})
  }) as FastifyInstance
  app.setErrorHandler(openAiErrorHandler)
  app.setNotFoundHandler(openAiNotFoundHandler)
  await app.register(requestFacts)
  await app.register(admission, { slots: () => options.engine.slots, maxQueue: options.maxQueue ?? DEFAULT_MAX_QUEUE, retryAfterSeconds: QUEUE_RETRY_AFTER_S })
  // Before any route: hooks apply to the routes registered after them.
  if (options.metrics !== undefined) await app.register(requestMetrics, options.metrics)
  if (options.audit !== undefined) await app.register(requestAudit, options.audit)

  // Order matters: a draining server and foreign origins are refused before any route; /health
  // is open; /v1 is rate limited per address, sits behind the API key, then is limited per key.
  await app.register(drain)
  await app.register(securityHeaders)
  await app.register(crossOrigin, { origins: options.corsOrigins ?? [] })
  await app.register(healthRoutes, served)
  if (options.dashboard !== undefined) {
    if (options.metrics === undefined) throw new TypeError('the dashboard charts the API\'s metrics: pass `metrics` too')
    await app.register(dashboard, { source: options.dashboard, load: options.metrics.metrics, apiKey: options.apiKey, keys: options.keys, rateLimits: options.rateLimits ?? DEFAULT_RATE_LIMITS })
  }
  await app.register(async v1 => {
    await v1.register(rateLimits, options.rateLimits ?? DEFAULT_RATE_LIMITS)
    await v1.register(bearerAuth, { apiKey: options.apiKey, keys: options.keys })
    await v1.register(modelRoutes, served)
    await v1.register(completionRoutes, served)
    await v1.register(chatCompletionRoutes, served)
  }, { prefix: '/v1' })
  const metrics = options.metrics
  if (metrics !== undefined) {
    await app.register(async scope => {
      if (!metrics.public) await scope.register(bearerAuth, { apiKey: options.apiKey, keys: options.keys })
      await scope.register(metricsRoutes, metrics)
    })
  }
  return app
}

// A model without a usable chat template still serves text completions; chat requests get the reason.
async function chatTemplateOrReason (modelPath: string): Promise<ChatTemplate | Error> {
  try {
    return await readChatTemplate(modelPath)
  } catch (err) {
    if (err instanceof NoChatTemplateError || err instanceof ChatTemplateError) return err
    throw err
  }
}
