import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Usage } from './generation.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** the stable id of the API key that authenticated the request (never the key); null before auth or without one */
    apiKeyId: string | null
    /** the token counts of the request's generation once it ended (also a stream's, a failed or an aborted one's, so far) */
    usage: Usage | null
    /** the model the request named, once a completion route accepted it */
    modelName: string | null
  }
}

// Decorated with null so that every request has the same shape (V8 keeps one hidden class); the
// auth hook and the completion routes fill them in, onResponse hooks (metrics, audit) read them.
async function requestFactsPlugin (app: FastifyInstance): Promise<void> {
  app.decorateRequest('apiKeyId', null)
  app.decorateRequest('usage', null)
  app.decorateRequest('modelName', null)
}

/** Fastify plugin: the facts about a request that metrics and the audit ledger record, never its content. */
export const requestFacts = fp(requestFactsPlugin, { name: 'llmesh-request-facts', fastify: '5.x' })
