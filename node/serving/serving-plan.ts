import { planFromStages, planRecovery, planStages, type ModelFacts, type NodeOffer, type PrivacyMode, type StagePlan, type StageRange } from '../../scheduler/index.js'

/** `--engine`: `local` runs node-llama-cpp in-process, `cluster` llama-server with RPC workers, `auto` picks by members. */
export type EngineChoice = 'auto' | 'local' | 'cluster'

export const ENGINE_CHOICES: readonly EngineChoice[] = ['auto', 'local', 'cluster']

/** How the coordinator serves the model right now. */
export type ServingPlan =
  | { kind: 'local', contextSize: number }
  | { kind: 'cluster', plan: StagePlan }

export interface ServingPlanInput {
  choice: EngineChoice
  model: ModelFacts
  coordinator: NodeOffer
  /** the live workers, in a stable order (it becomes the pipeline order) */
  workers: readonly NodeOffer[]
  contextSize: number
  /** the cluster engine's parallel slots (the local engine has one) */
  parallel: number
  privacy: PrivacyMode
  /** a manual `--stages` override, coordinator first */
  stages?: readonly StageRange[]
  /**
   * The plan the workers hold the layers of, after a loss: the new plan then sends them as
   * little as possible (planRecovery) instead of sharing by speed, to serve again sooner.
   */
  recoverFrom?: StagePlan
}

/**
 * Decides how to serve: `auto` without workers runs the local engine (no llama.cpp build
 * needed), otherwise the scheduler splits the layers. Throws the scheduler's errors
 * (PlanDoesNotFitError names the missing bytes) when no plan fits, also when `auto` is left
 * with the coordinator alone and the model does not fit in what it offers.
 */
export function chooseServingPlan (input: ServingPlanInput): ServingPlan {
  if (input.choice === 'local') return { kind: 'local', contextSize: input.contextSize }
  const planInput = {
    model: input.model,
    coordinator: input.coordinator,
    workers: input.workers,
    contextSize: input.contextSize,
    parallel: input.parallel,
    privacy: input.privacy
  }
  if (input.choice === 'auto' && input.workers.length === 0 && input.stages == null) {
    // The same sums as a one-stage plan: a coordinator that lost its workers must still have room.
    planStages(planInput)
    return { kind: 'local', contextSize: input.contextSize }
  }
  if (input.stages != null) return { kind: 'cluster', plan: planFromStages(planInput, input.stages) }
  return { kind: 'cluster', plan: input.recoverFrom != null ? planRecovery(planInput, input.recoverFrom) : planStages(planInput) }
}

/** True when two plans put the same layers on the same nodes, so the running engine can stay. */
export function samePlacement (a: ServingPlan | undefined, b: ServingPlan): boolean {
  if (a === undefined || a.kind !== b.kind) return false
  if (a.kind === 'local' || b.kind === 'local') return true
  const placement = (plan: StagePlan): string => plan.stages.map(s => `${s.nodeId}:${s.firstLayer}+${s.layerCount}`).join(',')
  return placement(a.plan) === placement(b.plan) && a.plan.contextSize === b.plan.contextSize
}
