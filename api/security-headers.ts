import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import fastifyHelmet from '@fastify/helmet'

async function securityHeadersPlugin (app: FastifyInstance): Promise<void> {
  await app.register(fastifyHelmet, {
    // The API serves JSON and event streams, never pages: nothing may load, run or frame it.
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    // Cross-origin reads are governed by CORS (cross-origin.ts), not by resource policy.
    crossOriginResourcePolicy: { policy: 'same-site' },
    // The API is plain HTTP on the LAN; pinning browsers to HTTPS for the host would break it.
    strictTransportSecurity: false
  })
  // Completions are private: no proxy or browser cache may keep them.
  app.addHook('onSend', async (_request, reply) => {
    if (!reply.hasHeader('cache-control')) void reply.header('cache-control', 'no-store')
  })
}

/** Fastify plugin: security headers (helmet, with a CSP for an API) and no-store on every response. */
export const securityHeaders = fp(securityHeadersPlugin, { name: 'llmesh-security-headers', fastify: '5.x' })
