import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { PassThrough } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { bearerAuth, type BearerAuthOptions } from '../auth.js'
import { rateLimits, type RateLimits } from '../rate-limits.js'
import { DashboardFeed, type DashboardSource, type LoadSource } from './feed.js'

export type { DashboardSource } from './feed.js'

// The page's files ship in the package beside this module's source (api/dashboard/static), and
// the chart library in node_modules: nothing is fetched from elsewhere, so the page works offline.
const STATIC_DIR = fileURLToPath(new URL('../../../api/dashboard/static/', import.meta.url))
const UPLOT_DIR = dirname(createRequire(import.meta.url).resolve('uplot'))

/** Every file the page loads, by URL path: nothing else is served from disk. */
const FILES: Record<string, { path: string, type: string }> = {
  '/': { path: join(STATIC_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/dashboard/app.js': { path: join(STATIC_DIR, 'app.js'), type: 'text/javascript; charset=utf-8' },
  '/dashboard/render.js': { path: join(STATIC_DIR, 'render.js'), type: 'text/javascript; charset=utf-8' },
  '/dashboard/style.css': { path: join(STATIC_DIR, 'style.css'), type: 'text/css; charset=utf-8' },
  '/dashboard/uPlot.esm.js': { path: join(UPLOT_DIR, 'uPlot.esm.js'), type: 'text/javascript; charset=utf-8' },
  '/dashboard/uPlot.min.css': { path: join(UPLOT_DIR, 'uPlot.min.css'), type: 'text/css; charset=utf-8' }
}

/**
 * The page's policy: its own scripts, styles and API only. No inline script or style element, no
 * other origin; uPlot sizes its elements through the CSSOM, which style-src does not govern.
 */
const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

export interface DashboardOptions extends BearerAuthOptions {
  source: DashboardSource
  load: LoadSource
  /** the API's per-address and per-key limits, counted apart from /v1's: a key guessed here is guessed slowly too */
  rateLimits: RateLimits
}

async function dashboardPlugin (app: FastifyInstance, options: DashboardOptions): Promise<void> {
  const feed = new DashboardFeed(options.source, options.load)
  app.addHook('onClose', async () => { feed.close() })

  for (const [url, file] of Object.entries(FILES)) {
    const body = await readFile(file.path)
    app.get(url, async (_request, reply) => await reply.type(file.type).header('content-security-policy', PAGE_CSP).send(body))
  }

  // The page sends the key as a Bearer header (fetch, not EventSource, which cannot): it never
  // appears in a URL, and no cookie carries it.
  await app.register(async api => {
    await api.register(rateLimits, options.rateLimits)
    await api.register(bearerAuth, { apiKey: options.apiKey, keys: options.keys })
    api.get('/dashboard/api/status', async () => await options.source.status())
    api.get('/dashboard/api/events', async (request, reply) => {
      const stream = new PassThrough()
      // A comment line every 15 s keeps proxies and idle timers from closing a quiet stream.
      const keepAlive = setInterval(() => { stream.write(': keep-alive\n\n') }, 15_000)
      // Listening before subscribing: a page gone while the first status is read is let go too.
      const subscribed = feed.subscribe(({ event, data }) => { stream.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`) })
      request.raw.once('close', () => {
        clearInterval(keepAlive)
        stream.end()
        void subscribed.then(unsubscribe => { unsubscribe() }, () => {})
      })
      await subscribed
      return await reply
        .header('content-type', 'text/event-stream; charset=utf-8')
        .header('cache-control', 'no-store')
        .header('x-accel-buffering', 'no')
        .send(stream)
    })
  })
}

/**
 * Fastify plugin: the web dashboard. GET / serves the page (open), GET /dashboard/api/status
 * the `mesh status --json` document and GET /dashboard/api/events a server-sent event stream of
 * changes and 1 s load samples (both behind the API key).
 */
export const dashboard = fp(dashboardPlugin, { name: 'llmesh-dashboard', fastify: '5.x', dependencies: ['llmesh-request-facts'] })
