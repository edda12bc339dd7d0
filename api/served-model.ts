import type { ChatTemplate } from '../engine/chat-template.js'
import type { Engine } from '../engine/engine.js'
import { NotFoundError } from './errors.js'

/** The one model the API serves, shared by its routes as plugin options. */
export interface ServedModel {
  /** the engine that runs it */
  engine: Engine
  /** the id clients name in `model` and see in GET /v1/models */
  name: string
  /** its chat template, or the reason chat requests are refused (the file has none, it does not compile) */
  chatTemplate: ChatTemplate | Error
  /** when the API started serving it, in seconds since the epoch (OpenAI's `created`) */
  created: number
  /** whether the engine can serve now; undefined means always */
  readiness?: () => EngineReadiness
}

/** What GET /health reports about the engine. */
export interface EngineReadiness {
  ready: boolean
  /** e.g. "ready", "loading", "unavailable" */
  state: string
  /** why it is not ready */
  reason?: string
}

/** Throws NotFoundError unless the request names the served model. */
export function checkModelName (served: ServedModel, requested: string): void {
  if (requested !== served.name) {
    throw new NotFoundError(`the model ${JSON.stringify(requested)} does not exist here; this server runs ${JSON.stringify(served.name)} (see GET /v1/models)`, 'model', 'model_not_found')
  }
}
