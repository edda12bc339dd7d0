import { basename } from 'node:path'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { ChatTemplateError, NoChatTemplateError, readChatTemplate, type ChatTemplate } from '../engine/chat-template.js'
import type { Engine } from '../engine/engine.js'
import { bearerAuth } from './auth.js'
import { BODY_LIMIT_BYTES } from './constants.js'
import { openAiErrorHandler, openAiNotFoundHandler } from './error-handler.js'
import { chatCompletionRoutes } from './routes/chat-completions.js'
import { completionRoutes } from './routes/completions.js'
import { healthRoutes } from './routes/health.js'
import { modelRoutes } from './routes/models.js'
import type { ServedModel } from './served-model.js'

export interface ApiServerOptions {
  /** the engine that generates: the local engine or the cluster's llama-server */
  engine: Engine
  /** the key clients must send as `Authorization: Bearer <key>` on /v1/* */
  apiKey: string
  /** the model id clients name (default: the model file's name without `.gguf`) */
  modelName?: string
  /** fastify's logger setting (default: off); it logs methods, URLs and statuses, never bodies */
  logger?: FastifyServerOptions['logger']
  /** whether the engine can serve now, for GET /health (default: always ready) */
  readiness?: ServedModel['readiness']
}

/**
 * Builds the OpenAI-compatible API over one engine, ready for `listen()`. The caller owns the
 * engine: closing the server does not dispose it.
 */
export async function createApiServer (options: ApiServerOptions): Promise<FastifyInstance> {
  const served: ServedModel = {
    engine: options.engine,
    name: options.modelName ?? basename(options.engine.modelPath).replace(/\.gguf$/i, ''),
    chatTemplate: await chatTemplateOrReason(options.engine.modelPath),
    created: Math.floor(Date.now() / 1000),
    readiness: options.readiness
  }
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: BODY_LIMIT_BYTES,
    // close() ends open connections, streams included (their generations are then aborted), rather
    // than waiting up to the keep-alive timeout for clients to hang up.
    forceCloseConnections: true,
    // A string where a number belongs is a client bug to report, not to paper over.
    ajv: { customOptions: { coerceTypes: false } }
  })
  app.setErrorHandler(openAiErrorHandler)
  app.setNotFoundHandler(openAiNotFoundHandler)

  // Order matters: /health is open; everything under /v1 sits behind the API key.
  await app.register(healthRoutes, served)
  await app.register(async v1 => {
    await v1.register(bearerAuth, { apiKey: options.apiKey })
    await v1.register(modelRoutes, served)
    await v1.register(completionRoutes, served)
    await v1.register(chatCompletionRoutes, served)
  }, { prefix: '/v1' })
  return app
}

// A model without a usable chat template still serves text completions; chat requests get the reason.
async function chatTemplateOrReason (modelPath: string): Promise<ChatTemplate | Error> {
  try {
    return await readChatTemplate(modelPath)
  } catch (err) {
    if (err instanceof NoChatTemplateError || err instanceof ChatTemplateError) return err
    throw err
  }
}
