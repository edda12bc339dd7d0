// The coordinator's serving status as `mesh status --json` shows it: a types module of its own,
// so that the node's status report can name it without importing the coordinator.
import type { ServingLoad } from '../../api/metrics.js'
import type { ServingState } from '../../engine/serving-engine.js'
import type { StagePlan } from '../../scheduler/index.js'

/** The engine part of `mesh status --json`. */
export interface EngineStatus {
  state: ServingState
  /** "local" or "llama-server" while serving */
  kind: string | null
  model: string
  /** why the engine cannot serve, when it cannot */
  reason: string | null
  plan: StagePlan | null
  planTable: string | null
  /** requests the engine serving now generates at once (null while none serves) */
  slots: number | null
  apiUrl: string
  /** tokens per second, queue depth and active streams now */
  load: ServingLoad
}
