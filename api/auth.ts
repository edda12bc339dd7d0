import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AuthenticationError } from './errors.js'

/** Further API keys besides the default one (those `mesh key add` created). */
export interface ApiKeyVerifier {
  /** The stable id of `key` when it is valid, else null; compares in constant time. */
  verify: (key: string) => string | null
}

export interface BearerAuthOptions {
  /** the API key `mesh init` created, known as key id "default" */
  apiKey: string
  /** further valid keys (default: none) */
  keys?: ApiKeyVerifier
}

/** The key id the key `mesh init` created is known by. */
export const DEFAULT_API_KEY_ID = 'default'

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
      throw new AuthenticationError('no API key given; send it as "Authorization: Bearer <key>" (the key `mesh init` printed, or one from `mesh key add`)', null, 'missing_api_key')
    }
    const isDefault = timingSafeEqual(digest(match[1]), expected)
    const id = options.keys?.verify(match[1]) ?? null
    if (!isDefault && id === null) {
      throw new AuthenticationError('the API key is not valid; use the key `mesh init` printed for this cluster or one from `mesh key add`', null, 'invalid_api_key')
    }
    request.apiKeyId = isDefault ? DEFAULT_API_KEY_ID : id
  })
}

/** Fastify plugin: every route of the scope that registers it requires a Bearer API key; sets `request.apiKeyId`. */
export const bearerAuth = fp(bearerAuthPlugin, { name: 'llmesh-bearer-auth', fastify: '5.x', dependencies: ['llmesh-request-facts'] })
