import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { routeLabel } from './metrics.js'
import type { AuditLedger } from '../node/audit-ledger.js'
import type { Log } from '../node/log.js'

export interface RequestAuditOptions {
  /** where every finished /v1 request is recorded */
  ledger: AuditLedger
  /** the node's log: a failed append is an error line; each request a debug line (never its content) */
  log: Log
}

async function requestAuditPlugin (app: FastifyInstance, options: RequestAuditOptions): Promise<void> {
  const { ledger, log } = options
  app.onRequestEnd(async (request, { status, durationMs }) => {
    // The API's requests, not health checks and metric scrapes that would drown them.
    if (!request.url.startsWith('/v1/')) return
    const route = routeLabel(request)
    const usage = request.usage
    log('debug', `request ${request.id} ${request.method} ${route} ${status} in ${durationMs.toFixed(1)} ms, ` +
      `${usage?.prompt_tokens ?? 0} prompt and ${usage?.completion_tokens ?? 0} completion tokens`)
    try {
      await ledger.append({
        requestId: request.id,
        apiKeyId: request.apiKeyId,
        model: request.modelName,
        promptTokens: usage?.prompt_tokens ?? 0,
        completionTokens: usage?.completion_tokens ?? 0,
        durationMs,
        status
      })
    } catch (err) {
      log('error', `cannot append request ${request.id} to the audit ledger: ${(err as Error).message}`)
    }
  })
}

/** Fastify plugin: appends every finished /v1 request to the audit ledger: counts and outcome, never content. */
export const requestAudit = fp(requestAuditPlugin, { name: 'llmesh-request-audit', fastify: '5.x', dependencies: ['llmesh-request-facts'] })
