import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AuthenticationError } from './errors.js'

export interface BearerAuthOptions {
  /** the API key `mesh init` created; requests must send `Authorization: Bearer <key>` */
  apiKey: string
}

// Comparing digests keeps the comparison constant-time whatever the length of the key sent.
function digest (text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

async function bearerAuthPlugin (app: FastifyInstance, options: BearerAuthOptions): Promise<void> {
  if (options.apiKey.length === 0) throw new TypeError('the API key must not be empty')
  const expected = digest(options.apiKey)
  app.addHook('onRequest', async (request: FastifyRequest) => {
    const header = request.headers.authorization
    const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header)
    if (match == null) {
      throw new AuthenticationError('no API key given; send it as "Authorization: Bearer <key>" (the key `mesh init` printed)', null, 'missing_api_key')
    }
    if (!timingSafeEqual(digest(match[1]), expected)) {
      throw new AuthenticationError('the API key is not valid; use the key `mesh init` printed for this cluster', null, 'invalid_api_key')
    }
  })
}

/** Fastify plugin: every route of the scope that registers it requires the Bearer API key. */
export const bearerAuth = fp(bearerAuthPlugin, { name: 'llmesh-bearer-auth', fastify: '5.x' })
