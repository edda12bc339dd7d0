import type { FastifyInstance } from 'fastify'
import type { ServedModel } from '../served-model.js'

/** Fastify plugin: GET /health, unauthenticated, for load balancers and `mesh status`. */
export async function healthRoutes (app: FastifyInstance, served: ServedModel): Promise<void> {
  app.get('/health', {
    schema: {
      response: {
        200: {
          type: 'object',
          properties: { status: { type: 'string' }, model: { type: 'string' }, engine: { type: 'string' } },
          required: ['status', 'model', 'engine']
        }
      }
    }
  }, async () => ({ status: 'ok', model: served.name, engine: served.engine.name }))
}
