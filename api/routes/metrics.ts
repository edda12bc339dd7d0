import type { FastifyInstance } from 'fastify'
import type { Registry } from 'prom-client'

/** Fastify plugin: GET /metrics, the node's registry (node, tunnel and API metrics) in Prometheus text format. */
export async function metricsRoutes (app: FastifyInstance, options: { registry: Registry }): Promise<void> {
  app.get('/metrics', async (_request, reply) => {
    const text = await options.registry.metrics()
    return await reply.type(options.registry.contentType).send(text)
  })
}
