import type { FastifyInstance } from 'fastify'
import { errorResponses } from '../schemas.js'
import { checkModelName, type ServedModel } from '../served-model.js'

const modelSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    object: { type: 'string' },
    created: { type: 'integer' },
    owned_by: { type: 'string' }
  },
  required: ['id', 'object', 'created', 'owned_by']
} as const

function describe (served: ServedModel): { id: string, object: 'model', created: number, owned_by: string } {
  return { id: served.name, object: 'model', created: served.created, owned_by: 'llmesh' }
}

/** Fastify plugin: GET /models lists the served model, GET /models/:model describes it. */
export async function modelRoutes (app: FastifyInstance, served: ServedModel): Promise<void> {
  app.get('/models', {
    schema: {
      response: {
        200: { type: 'object', properties: { object: { type: 'string' }, data: { type: 'array', items: modelSchema } }, required: ['object', 'data'] },
        ...errorResponses
      }
    }
  }, async () => ({ object: 'list', data: [describe(served)] }))

  app.get<{ Params: { model: string } }>('/models/:model', {
    schema: {
      params: { type: 'object', properties: { model: { type: 'string' } }, required: ['model'] },
      response: { 200: modelSchema, ...errorResponses }
    }
  }, async request => {
    checkModelName(served, request.params.model)
    return describe(served)
  })
}
