// The coordinator's serving status as `mesh status --json` shows it: a types module of its own,
// so that the node's status report can name it without importing the coordinator.
import type { ServingLoad } from '../../api/metrics.js'
import type { ServingState } from '../../engine/serving-engine.js'
import type { StagePlan } from '../../scheduler/index.js'

/** One replica group in `mesh status --json`: its plan and load. */
export interface GroupStatus {
  /** the id its metrics carry (label `group`), null while it is not running */
  id: string | null
  plan: StagePlan
  /** requests its llama-server generates at once (0 while not serving) */
  slots: number
  /** requests it generates now */
  activeRequests: number
  /** tokens it generated per second over the last 10 s */
  tokensPerSecond: number
}

/** The engine part of `mesh status --json`. */
export interface EngineStatus {
  state: ServingState
  /** "local" or "llama-server" while serving */
  kind: string | null
  model: string
  /** why the engine cannot serve, when it cannot */
  reason: string | null
  /** the first replica group's plan (the only one's, when the layout is one pipeline) */
  plan: StagePlan | null
  /** the layout as tables for people, one per group */
  planTable: string | null
  /** every replica group of the layout, each a complete pipeline with its own llama-server (absent while none is planned) */
  groups?: GroupStatus[]
  /** workers the layout gives no layers, in no group or in none of its stages (absent while none is planned) */
  unusedWorkers?: string[]
  /** requests the engine serving now generates at once (null while none serves) */
  slots: number | null
  apiUrl: string
  /** tokens per second, queue depth and active streams now */
  load: ServingLoad
}
