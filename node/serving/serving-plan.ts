import { planLayout, planLayoutRecovery, type ModelFacts, type NodeOffer, type Placement, type PrivacyMode, type ServingLayout, type StagePlan, type StageRange } from '../../scheduler/index.js'

/** `--engine`: `local` runs node-llama-cpp in-process, `cluster` llama-server with RPC workers, `auto` picks by members. */
export type EngineChoice = 'auto' | 'local' | 'cluster'

export const ENGINE_CHOICES: readonly EngineChoice[] = ['auto', 'local', 'cluster']

/** How the coordinator serves the model right now: the local engine, or one llama-server per replica group. */
export type ServingPlan =
  | { kind: 'local', contextSize: number }
  | { kind: 'cluster', layout: ServingLayout }

export interface ServingPlanInput {
  choice: EngineChoice
  model: ModelFacts
  coordinator: NodeOffer
  /** the live workers, in a stable order (it becomes the pipeline order) */
  workers: readonly NodeOffer[]
  contextSize: number
  /** each llama-server's parallel slots (the local engine has one) */
  parallel: number
  privacy: PrivacyMode
  /** `--placement` (default auto) */
  placement?: Placement
  /** `--replicas N` */
  replicas?: number
  /** a manual `--stages` override, coordinator first */
  stages?: readonly StageRange[]
  /**
   * The layout the workers hold the layers of, after a loss: the groups that lost no worker
   * keep serving as they are, and a single pipeline sends its workers as little as possible
   * (planRecovery) instead of sharing by speed, to serve again sooner.
   */
  recoverFrom?: ServingLayout
}

/**
 * Decides how to serve: `auto` without workers runs the local engine (no llama.cpp build
 * needed), otherwise the scheduler lays the model out in replica groups. Throws the
 * scheduler's errors (PlanDoesNotFitError names the missing bytes) when no layout fits, also
 * when `auto` is left with the coordinator alone and the model does not fit in what it offers.
 */
export function chooseServingPlan (input: ServingPlanInput): ServingPlan {
  if (input.choice === 'local') return { kind: 'local', contextSize: input.contextSize }
  const layoutInput = {
    model: input.model,
    coordinator: input.coordinator,
    workers: input.workers,
    contextSize: input.contextSize,
    parallel: input.parallel,
    privacy: input.privacy,
    placement: input.placement,
    replicas: input.replicas,
    stages: input.stages
  }
  if (input.choice === 'auto' && input.workers.length === 0 && input.stages == null) {
    // The same sums as a one-stage plan: a coordinator that lost its workers must still have room.
    planLayout({ ...layoutInput, placement: 'pipeline', replicas: undefined })
    return { kind: 'local', contextSize: input.contextSize }
  }
  return { kind: 'cluster', layout: input.recoverFrom != null ? planLayoutRecovery(layoutInput, input.recoverFrom) : planLayout(layoutInput) }
}

/** What makes a group's llama-server what it is: the same key means the running one can stay. */
export function groupKey (plan: StagePlan): string {
  return `${plan.stages.map(s => `${s.nodeId}:${s.firstLayer}+${s.layerCount}`).join(',')}/${plan.contextSize}x${plan.parallel}`
}

/** True when two plans run the same groups, so the running engine can stay. */
export function samePlacement (a: ServingPlan | undefined, b: ServingPlan): boolean {
  if (a === undefined || a.kind !== b.kind) return false
  if (a.kind === 'local' || b.kind === 'local') return true
  const keys = (layout: ServingLayout): string => layout.groups.map(group => groupKey(group.plan)).sort().join('|')
  return keys(a.layout) === keys(b.layout)
}
