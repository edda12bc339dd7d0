import { performance } from 'node:perf_hooks'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Usage } from './generation.js'

/** How a request ended: the status it was answered with (499 when its client left first) and how long it took. */
export interface RequestEnding {
  status: number
  durationMs: number
}

/** Told once about every request when it ends, answered or abandoned by its client. */
export type RequestEndListener = (request: FastifyRequest, ending: RequestEnding) => Promise<void> | void

// nginx's "client closed request": what a request counts as when its client left before the
// answer was complete (while queued, or in the middle of a stream).
const CLIENT_CLOSED_REQUEST = 499

declare module 'fastify' {
  interface FastifyInstance {
    /** Adds a listener told about every request when it ends (metrics, the audit ledger). */
    onRequestEnd: (listener: RequestEndListener) => void
  }
  interface FastifyRequest {
    /** the stable id of the API key that authenticated the request (never the key); null before auth or without one */
    apiKeyId: string | null
    /** the token counts of the request's generation once it ended (also a stream's, a failed or an aborted one's, so far) */
    usage: Usage | null
    /** the model the request named, once a completion route accepted it */
    modelName: string | null
    /** performance.now() when the request arrived */
    receivedAt: number
  }
}

// Decorated with null so that every request has the same shape (V8 keeps one hidden class); the
// auth hook and the completion routes fill them in, request-end listeners (metrics, audit) read them.
async function requestFactsPlugin (app: FastifyInstance): Promise<void> {
  app.decorateRequest('apiKeyId', null)
  app.decorateRequest('usage', null)
  app.decorateRequest('modelName', null)
  app.decorateRequest('receivedAt', 0)

  const listeners: RequestEndListener[] = []
  const ended = new WeakSet<FastifyRequest>()
  app.decorate('onRequestEnd', (listener: RequestEndListener) => { listeners.push(listener) })
  async function end (request: FastifyRequest, ending: RequestEnding): Promise<void> {
    if (ended.has(request)) return
    ended.add(request)
    for (const listener of listeners) await listener(request, ending)
  }

  app.addHook('onRequest', async (request, reply) => {
    request.receivedAt = performance.now()
    // A client that leaves before its answer is complete gets no onResponse (the response never
    // finishes), and fastify's onRequestAbort only sees a client that leaves during the upload.
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) void end(request, { status: CLIENT_CLOSED_REQUEST, durationMs: performance.now() - request.receivedAt })
    })
  })
  app.addHook('onResponse', async (request, reply) => { await end(request, { status: reply.statusCode, durationMs: reply.elapsedTime }) })
}

/** Fastify plugin: the facts about a request that metrics and the audit ledger record, never its content, and the moment it ends. */
export const requestFacts = fp(requestFactsPlugin, { name: 'llmesh-request-facts', fastify: '5.x' })
