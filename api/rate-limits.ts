import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import fastifyRateLimit from '@fastify/rate-limit'
import { RateLimitError } from './errors.js'

/** Requests per window that one API key and one client address may send; 0 turns a limit off. */
export interface RateLimits {
  /** per API key (default DEFAULT_RATE_LIMITS.perKey) */
  perKey: number
  /** per client IP address */
  perIp: number
  /** the window both limits count in, in milliseconds */
  windowMs: number
}

/** Generous enough for a team's clients behind one address, low enough to stop a runaway loop. */
export const DEFAULT_RATE_LIMITS: RateLimits = { perKey: 600, perIp: 1200, windowMs: 60_000 }

type Limiter = ReturnType<FastifyInstance['createRateLimit']>

async function checkLimit (limiter: Limiter, request: FastifyRequest, who: string, max: number, windowMs: number): Promise<void> {
  const result = await limiter(request)
  if (!result.isAllowed && result.isExceeded) {
    // At least a second: "Retry-After: 0" would have clients retry at once, into the same limit.
    const retryAfter = Math.max(1, result.ttlInSeconds)
    throw new RateLimitError(`too many requests from ${who}: at most ${max} per ${windowMs / 1000} s; retry after ${retryAfter} s`, retryAfter)
  }
}

async function rateLimitsPlugin (app: FastifyInstance, limits: RateLimits): Promise<void> {
  await app.register(fastifyRateLimit, { global: false })
  const timeWindow = limits.windowMs
  if (limits.perIp > 0) {
    const perIp = app.createRateLimit({ max: limits.perIp, timeWindow, keyGenerator: request => `ip:${request.ip}` })
    // Before authentication: a client guessing keys is slowed down too.
    app.addHook('onRequest', async request => { await checkLimit(perIp, request, 'this address', limits.perIp, timeWindow) })
  }
  if (limits.perKey > 0) {
    const perKey = app.createRateLimit({ max: limits.perKey, timeWindow, keyGenerator: request => `key:${request.apiKeyId ?? ''}` })
    // preValidation runs after every onRequest hook, so the key is known by then.
    app.addHook('preValidation', async request => { await checkLimit(perKey, request, 'this API key', limits.perKey, timeWindow) })
  }
}

/** Fastify plugin: per-IP and per-key request limits (@fastify/rate-limit) answering OpenAI's 429 with Retry-After. */
export const rateLimits = fp(rateLimitsPlugin, { name: 'llmesh-rate-limits', fastify: '5.x', dependencies: ['llmesh-request-facts'] })
