import type { FastifyInstance } from 'fastify'
import type { ServedModel } from '../served-model.js'

/** Seconds a client of /health is told to wait while the engine is not ready. */
const NOT_READY_RETRY_AFTER_S = 5

const healthBody = {
  type: 'object',
  properties: {
    status: { type: 'string' },
    model: { type: 'string' },
    engine: { type: 'string' },
    reason: { type: 'string' }
  },
  required: ['status', 'model', 'engine']
}

/**
 * Fastify plugin: GET /health, unauthenticated, for load balancers and `mesh up`: 200 with
 * status "ok" when the engine can serve, 503 with its state, reason and Retry-After otherwise.
 */
export async function healthRoutes (app: FastifyInstance, served: ServedModel): Promise<void> {
  app.get('/health', { schema: { response: { 200: healthBody, 503: healthBody } } }, async (_request, reply) => {
    const readiness = served.readiness?.() ?? { ready: true, state: 'ready' }
    if (readiness.ready) return { status: 'ok', model: served.name, engine: served.engine.name }
    void reply.code(503).header('retry-after', String(NOT_READY_RETRY_AFTER_S))
    return { status: readiness.state, model: served.name, engine: served.engine.name, ...(readiness.reason != null ? { reason: readiness.reason } : {}) }
  })
}
