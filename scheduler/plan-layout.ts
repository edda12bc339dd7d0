import { InvalidPlacementError, PlanDoesNotFitError } from './errors.js'
import { formatBytesExact } from './format-bytes.js'
import { formatLayerRange } from './layer-range.js'
import { stageMemory } from './memory.js'
import { checkPlanInput } from './plan-input.js'
import { planRecovery } from './plan-recovery.js'
import { planStages } from './plan-stages.js'
import { planFromStages } from './stages-override.js'
import type { LayoutInput, NodeOffer, Placement, PlanInput, ServingLayout, StagePlan } from './types.js'

/** The values of `--placement`. */
export const PLACEMENTS: readonly Placement[] = ['auto', 'pipeline', 'replicas']

// A layout with more groups must be predicted faster by more than rounding noise to be chosen.
const SPEED_TIE = 1e-9

/**
 * Places a model as one or more replica groups, each a complete pipeline served by its own
 * llama-server: the coordinator's part (embedding, output head and, under privacy "on", layers
 * 0..k-1, with that group's own KV cache) then worker stages. A member is in at most one group.
 * The layout maximises predicted aggregate decode speed: within a group the stage times
 * (layers / speed) add up, because llama.cpp runs a pipeline's stages one after another;
 * across groups the speeds add up. With one group the plan is planStages' (all workers in one
 * speed-proportional pipeline). With several, the coordinator's memory is charged once per group
 * and its part stays the smallest privacy allows (its compute is shared by every group); under
 * privacy "off" it may also serve a whole replica alone. `placement` and `replicas` override the
 * choice. Throws PlanDoesNotFitError saying what is missing where when nothing fits,
 * InvalidPlacementError on contradictory overrides, InvalidPlanInputError on malformed input.
 */
export function planLayout (input: LayoutInput): ServingLayout {
  const placement = input.placement ?? 'auto'
  checkPlacement(input)
  if (input.stages != null) return layoutFromPlans([planFromStages(input, input.stages)], input)
  if (placement === 'pipeline' || input.replicas === 1) return layoutFromPlans([planStages(input)], input)
  const most = maxGroups(input)
  if (input.replicas !== undefined) {
    if (input.replicas > most) throw new InvalidPlacementError(`--replicas ${input.replicas} asks for more groups than there are ${input.privacy === 'off' ? 'workers plus the coordinator' : 'workers'} (${most}); a member serves in one group at most`)
    return bestWithGroups(input, input.replicas) ?? throwGroupsDoNotFit(input, input.replicas)
  }
  let best: ServingLayout | undefined
  let pipelineError: unknown
  if (placement === 'auto') {
    try {
      best = layoutFromPlans([planStages(input)], input)
    } catch (err) {
      if (!(err instanceof PlanDoesNotFitError)) throw err
      pipelineError = err
    }
  }
  for (let count = 2; count <= most; count++) {
    const found = bestWithGroups(input, count)
    if (found !== undefined && (best === undefined || found.speed > best.speed * (1 + SPEED_TIE))) best = found
  }
  if (best !== undefined) return best
  if (pipelineError !== undefined) throw pipelineError
  if (most < 2) throw new InvalidPlacementError(`--placement replicas needs at least two groups, but there ${most === 1 ? 'is one member' : 'are no members'} to form them; add workers or use --placement auto`)
  return throwGroupsDoNotFit(input, 2)
}

/**
 * The layout after a loss: groups whose workers are all still live keep serving exactly as they
 * are, so that losing a worker stops only its group; a single pipeline that lost a worker is
 * re-placed by planRecovery (its workers keep the layers they hold). When every one of several
 * groups lost a worker the layout is planned afresh.
 */
export function planLayoutRecovery (input: LayoutInput, previous: ServingLayout): ServingLayout {
  const live = new Set(input.workers.map(worker => worker.id))
  const kept = previous.groups.filter(group => group.plan.stages.every(stage => stage.role === 'coordinator' || live.has(stage.nodeId)))
  if (input.stages != null) return planLayout(input)
  if (kept.length > 0) return layoutFromPlans(kept.map(group => group.plan), input)
  if (previous.groups.length === 1) return layoutFromPlans([planRecovery(input, previous.groups[0].plan)], input)
  return planLayout(input)
}

/**
 * A layout of the given group plans with its predicted speeds: each group decodes at
 * 1 / (sum of its stages' layers / speed), the coordinator's speed shared by all groups.
 */
export function layoutFromPlans (plans: readonly StagePlan[], input: PlanInput): ServingLayout {
  const speeds = new Map(input.workers.map(worker => [worker.id, worker.speed]))
  const coordinatorSpeed = input.coordinator.speed / plans.length
  const groups = plans.map(plan => {
    const time = plan.stages.reduce((sum, stage) => sum + stage.layerCount / (stage.role === 'coordinator' ? coordinatorSpeed : speeds.get(stage.nodeId) ?? 1), 0)
    return { plan, speed: 1 / time }
  })
  const used = new Set(plans.flatMap(plan => plan.stages.filter(stage => stage.role === 'worker').map(stage => stage.nodeId)))
  return {
    groups,
    unusedWorkers: input.workers.map(worker => worker.id).filter(id => !used.has(id)),
    speed: groups.reduce((sum, group) => sum + group.speed, 0)
  }
}

/** Checks `--placement`, `--replicas` and `--stages` together; throws InvalidPlacementError on a malformed or contradictory choice. */
export function checkPlacement (input: Pick<LayoutInput, 'placement' | 'replicas' | 'stages'>): void {
  const placement = input.placement ?? 'auto'
  if (!PLACEMENTS.includes(placement)) throw new InvalidPlacementError(`placement "${String(placement)}" is not known; use one of ${PLACEMENTS.join(', ')}`)
  const { replicas } = input
  if (replicas !== undefined && (!Number.isSafeInteger(replicas) || replicas < 1)) throw new InvalidPlacementError(`--replicas must be a whole number of at least 1, got ${replicas}`)
  if (replicas !== undefined && replicas > 1 && placement === 'pipeline') throw new InvalidPlacementError(`--placement pipeline serves one group, but --replicas asks for ${replicas}; leave one of them out`)
  if (replicas === 1 && placement === 'replicas') throw new InvalidPlacementError('--placement replicas serves two or more groups, but --replicas asks for 1; use --placement pipeline')
  if (input.stages != null && (placement === 'replicas' || (replicas ?? 1) > 1)) {
    throw new InvalidPlacementError('--stages places one pipeline, so it cannot be combined with --placement replicas or --replicas above 1')
  }
}

// A worker serves in one group; under privacy "off" the coordinator may serve one replica alone.
function maxGroups (input: PlanInput): number {
  return input.workers.length + (input.privacy === 'off' ? 1 : 0)
}

/** Bytes of the coordinator's part of one replica group: embedding, output head, the layers privacy requires with their KV cache, compute buffers. */
export function coordinatorPartBytes (input: PlanInput): number {
  const checked = checkPlanInput(input)
  return stageMemory(checked, 0, checked.minCoordinatorLayers, true).totalBytes
}

/** The coordinator's offer to each of `count` groups, or undefined when its memory cannot hold that many copies of its part. */
function coordinatorShares (input: PlanInput, count: number): { part: NodeOffer, alone: NodeOffer } | undefined {
  const { coordinator } = input
  const share = Math.floor(coordinator.offeredBytes / count)
  const partBytes = coordinatorPartBytes(input)
  if (share < partBytes) return undefined
  const speed = coordinator.speed / count
  // Offering exactly its part keeps the coordinator to the layers privacy requires.
  return { part: { id: coordinator.id, offeredBytes: partBytes, speed }, alone: { id: coordinator.id, offeredBytes: share, speed } }
}

/** The fastest layout of exactly `count` groups among a few balanced partitions of the workers, if any fits. */
function bestWithGroups (input: PlanInput, count: number): ServingLayout | undefined {
  const shares = coordinatorShares(input, count)
  if (shares === undefined) return undefined
  let best: ServingLayout | undefined
  for (const bins of partitions(input, count)) {
    const plans: StagePlan[] = []
    for (const bin of bins) {
      const plan = tryPlan({ ...input, coordinator: bin.length === 0 ? shares.alone : shares.part, workers: bin })
      if (plan === undefined) break
      plans.push(plan)
    }
    if (plans.length < count) continue
    const layout = layoutFromPlans(plans, input)
    if (best === undefined || layout.speed > best.speed * (1 + SPEED_TIE)) best = layout
  }
  return best
}

function tryPlan (input: PlanInput): StagePlan | undefined {
  try {
    return planStages(input)
  } catch (err) {
    if (err instanceof PlanDoesNotFitError) return undefined
    throw err
  }
}

/**
 * Candidate splits of the workers into `count` groups: longest-processing-time first by memory
 * (every group gets about the same memory, so that each can hold the model) and by speed. Each
 * group keeps the workers' given order as its pipeline order. With one group more than workers
 * (privacy "off"), the extra group is the coordinator alone.
 */
function partitions (input: PlanInput, count: number): NodeOffer[][][] {
  const { workers } = input
  if (count > workers.length) return [[...workers.map(worker => [worker]), []]]
  const order = new Map(workers.map((worker, index) => [worker.id, index]))
  const split = (weight: (worker: NodeOffer) => number): NodeOffer[][] => {
    const bins = Array.from({ length: count }, () => ({ total: 0, members: [] as NodeOffer[] }))
    const sorted = [...workers].sort((a, b) => weight(b) - weight(a) || (order.get(a.id) ?? 0) - (order.get(b.id) ?? 0))
    for (const worker of sorted) {
      const lightest = bins.reduce((least, bin) => bin.total < least.total ? bin : least)
      lightest.total += weight(worker)
      lightest.members.push(worker)
    }
    return bins.map(bin => bin.members.sort((a, b) => (order.get(a.id) ?? 0) - (order.get(b.id) ?? 0)))
  }
  const candidates = [split(worker => worker.offeredBytes), split(worker => worker.speed)]
  const key = (bins: NodeOffer[][]): string => bins.map(bin => bin.map(worker => worker.id).join('+')).sort().join('|')
  return candidates.filter((bins, index) => candidates.findIndex(other => key(other) === key(bins)) === index)
}

/** The error for `--replicas N` (or the smallest replica layout) that fits no split of the members. */
function throwGroupsDoNotFit (input: PlanInput, count: number): never {
  const checked = checkPlanInput(input)
  const { coordinator } = input
  const partBytes = coordinatorPartBytes(input)
  const neededBytes = partBytes * count
  if (neededBytes > coordinator.offeredBytes) {
    const what = `${count} copies (one per group) of the embedding, output head${checked.minCoordinatorLayers > 0 ? ` and layer${checked.minCoordinatorLayers > 1 ? 's' : ''} ${formatLayerRange(0, checked.minCoordinatorLayers)}` : ''} with their KV cache`
    const missingBytes = neededBytes - coordinator.offeredBytes
    throw new PlanDoesNotFitError(
      `${count} replica groups do not fit: the coordinator ${coordinator.id} needs ${formatBytesExact(neededBytes)} for ${what} but offers ${formatBytesExact(coordinator.offeredBytes)}, ${formatBytesExact(missingBytes)} missing; ask for fewer groups or offer the coordinator more memory`,
      missingBytes,
      [{ nodeId: coordinator.id, what, neededBytes, availableBytes: coordinator.offeredBytes, missingBytes }]
    )
  }
  const shares = coordinatorShares(input, count)
  const bins = partitions(input, count)[0]
  for (const [index, bin] of bins.entries()) {
    try {
      planStages({ ...input, coordinator: bin.length === 0 ? shares?.alone ?? coordinator : shares?.part ?? coordinator, workers: bin })
    } catch (err) {
      if (!(err instanceof PlanDoesNotFitError)) throw err
      const members = bin.length === 0 ? 'the coordinator alone' : bin.map(worker => worker.id).join(', ')
      throw new PlanDoesNotFitError(`${count} replica groups do not fit: group ${index + 1} (${members}) cannot hold the model: ${err.message}`, err.missingBytes, err.shortfalls)
    }
  }
  // bestWithGroups tried this very split, so some group above failed; the compiler cannot know that.
  throw new PlanDoesNotFitError(`${count} replica groups do not fit in the members' memory; ask for fewer groups`, 1, [])
}
