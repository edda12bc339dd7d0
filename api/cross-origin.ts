import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import fastifyCors from '@fastify/cors'
import { ForbiddenOriginError } from './errors.js'

export interface CrossOriginOptions {
  /** browser origins (e.g. https://chat.example.lan) whose pages may call the API; empty refuses every one */
  origins: readonly string[]
}

async function crossOriginPlugin (app: FastifyInstance, options: CrossOriginOptions): Promise<void> {
  const allowed = new Set(options.origins)
  const common = { methods: ['GET', 'POST'], allowedHeaders: ['authorization', 'content-type'], maxAge: 600 }
  // No Origin header: not a browser page (curl, the openai clients), so CORS does not apply.
  const foreignOrigin = async (origin: string | undefined): Promise<boolean> => {
    if (origin === undefined || allowed.has(origin)) return origin !== undefined
    throw new ForbiddenOriginError(`requests from the web page origin ${JSON.stringify(origin)} are refused; start the coordinator with --cors-origin ${origin} to allow it`, null, 'origin_not_allowed')
  }
  await app.register(fastifyCors, {
    // The dashboard's own page (same origin: its module scripts and fetches carry an Origin
    // header too) is not a cross-origin caller.
    delegator: (request, callback) => {
      const sameOrigin = request.headers.origin !== undefined && request.headers.origin === `${request.protocol}://${request.headers.host ?? ''}`
      callback(null, { ...common, origin: sameOrigin ? false : foreignOrigin })
    }
  })
}

/** Fastify plugin: cross-origin (browser) requests are refused with 403 unless their origin is configured. */
export const crossOrigin = fp(crossOriginPlugin, { name: 'llmesh-cross-origin', fastify: '5.x' })
