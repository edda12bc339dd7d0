import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { ServiceUnavailableError } from './errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Stops taking requests (new ones get 503), lets the admitted ones finish for up to
     * `timeoutMs`, then closes the server, cutting off what still runs. Resolves true when
     * every request finished in time.
     */
    drain: (timeoutMs: number) => Promise<boolean>
  }
}

// Another coordinator may take over, or this one restarts: clients should come back soon.
const DRAIN_RETRY_AFTER_S = 5

async function drainPlugin (app: FastifyInstance): Promise<void> {
  let draining = false
  app.addHook('onRequest', async () => {
    if (draining) throw new ServiceUnavailableError('the server is shutting down and takes no new requests; retry shortly', DRAIN_RETRY_AFTER_S, 'server_shutting_down')
  })
  app.decorate('drain', async (timeoutMs: number) => {
    draining = true
    const timeout = new AbortController()
    const finished = await Promise.race([
      app.admission.idle().then(() => true),
      sleep(timeoutMs, false, { signal: timeout.signal }).catch(() => false)
    ])
    timeout.abort()
    await app.close()
    return finished
  })
}

/** Fastify plugin: `app.drain(timeoutMs)`, the graceful stop that SIGTERM triggers. */
export const drain = fp(drainPlugin, { name: 'llmesh-drain', fastify: '5.x', dependencies: ['llmesh-admission'] })
