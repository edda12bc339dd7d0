import { PlanDoesNotFitError, PrivacyViolationError, type Shortfall } from './errors.js'
import { formatBytesExact } from './format-bytes.js'
import { formatLayerRange } from './layer-range.js'
import { stageMemory } from './memory.js'
import type { CheckedPlanInput } from './plan-input.js'
import type { Stage, StagePlan } from './types.js'

/**
 * Turns layer counts (one per node, coordinator first, in pipeline order) into a plan, after
 * checking the privacy rule and every node's memory. Both the planner and `--stages` go
 * through here, so a plan that exists has been checked the same way.
 */
export function buildPlan (input: CheckedPlanInput, layerCounts: readonly number[]): StagePlan {
  const { model, nodes, contextSize, kvCacheType } = input
  if (layerCounts[0] < input.minCoordinatorLayers) {
    throw new PrivacyViolationError('privacy mode "on" keeps layer 0 on the coordinator, but this plan gives it no layers; give the coordinator the first range, or run with --privacy off')
  }
  const stages: Stage[] = []
  const unusedWorkers: string[] = []
  const shortfalls: Shortfall[] = []
  let firstLayer = 0
  nodes.forEach((node, index) => {
    const layerCount = layerCounts[index] ?? 0
    const isCoordinator = index === 0
    if (!isCoordinator && layerCount === 0) {
      unusedWorkers.push(node.id)
      return
    }
    const memory = stageMemory(input, firstLayer, layerCount, isCoordinator)
    if (memory.totalBytes > node.offeredBytes) {
      const what = isCoordinator ? `embedding, output head and layers ${formatLayerRange(firstLayer, layerCount)}` : `layers ${formatLayerRange(firstLayer, layerCount)}`
      shortfalls.push({ nodeId: node.id, what, neededBytes: memory.totalBytes, availableBytes: node.offeredBytes, missingBytes: memory.totalBytes - node.offeredBytes })
    }
    stages.push({ nodeId: node.id, role: isCoordinator ? 'coordinator' : 'worker', firstLayer, layerCount, memory, offeredBytes: node.offeredBytes })
    firstLayer += layerCount
  })
  if (shortfalls.length > 0) throw notEnoughMemoryOnNodes(shortfalls)
  return {
    layerCount: model.layerCount,
    contextSize,
    parallel: input.parallel,
    kvCacheType,
    privacy: input.privacy,
    coordinatorTensors: model.outsideLayerTensors,
    stages,
    unusedWorkers
  }
}

/** The error for a placement that puts more on some nodes than they offer. */
export function notEnoughMemoryOnNodes (shortfalls: readonly Shortfall[]): PlanDoesNotFitError {
  const missingBytes = shortfalls.reduce((sum, shortfall) => sum + shortfall.missingBytes, 0)
  const details = shortfalls.map(s => `${s.nodeId ?? 'no member'} needs ${formatBytesExact(s.neededBytes)} for ${s.what} but offers ${formatBytesExact(s.availableBytes)}, ${formatBytesExact(s.missingBytes)} missing`).join('; ')
  return new PlanDoesNotFitError(`the plan does not fit: ${details}; move layers to members with free memory, offer more memory, or lower the context size`, missingBytes, shortfalls)
}
