import { buildPlan } from './build-plan.js'
import { stageMemory } from './memory.js'
import { checkPlanInput, type CheckedPlanInput } from './plan-input.js'
import { planStages } from './plan-stages.js'
import type { PlanInput, StagePlan } from './types.js'

/** The best placement found for nodes `i..` covering the layers from some start: what it sends and its slowest stage. */
interface Suffix {
  sentBytes: number
  slowestStageTime: number
  /** layer counts of nodes `i..` */
  counts: number[]
}

/**
 * Re-places a model on the members left after a loss so that the workers are sent as few
 * weight bytes as possible: a worker keeps the layers it held in `previous` (they are in its
 * tensor cache, so a reload takes them from its disk) and the coordinator, which reads every
 * layer from its own model file, takes over what it can of the lost ones. Among placements
 * sending the same bytes the one with the fastest slowest stage wins. The plan serves again
 * quickly; the speed-proportional plan (planStages) is the one to rebalance to when the
 * cluster is quiet. Same rules as planStages: contiguous ranges, the coordinator first and
 * keeping the layers privacy requires, nobody over its offer; throws planStages' errors when
 * nothing fits.
 */
export function planRecovery (input: PlanInput, previous: StagePlan): StagePlan {
  const checked = checkPlanInput(input)
  const held = new Map(previous.stages.map(stage => [stage.nodeId, stage]))
  const best = new RecoverySearch(checked, held).search()
  // Nothing fits: the speed-proportional planner explains what is missing and where.
  if (best === undefined) return planStages(input)
  return buildPlan(checked, best.counts)
}

/** An exhaustive search over contiguous placements, memoised by (node, first layer). */
class RecoverySearch {
  private readonly layerCount: number
  private readonly memo = new Map<number, Suffix | undefined>()

  constructor (private readonly input: CheckedPlanInput, private readonly held: ReadonlyMap<string, { firstLayer: number, layerCount: number }>) {
    this.layerCount = input.model.layerCount
  }

  search (): Suffix | undefined {
    return this.from(0, 0)
  }

  private from (nodeIndex: number, start: number): Suffix | undefined {
    const { nodes } = this.input
    if (nodeIndex === nodes.length) return start === this.layerCount ? { sentBytes: 0, slowestStageTime: 0, counts: [] } : undefined
    const key = nodeIndex * (this.layerCount + 1) + start
    if (this.memo.has(key)) return this.memo.get(key)
    const node = nodes[nodeIndex]
    const isCoordinator = nodeIndex === 0
    let best: Suffix | undefined
    const least = isCoordinator ? this.input.minCoordinatorLayers : 0
    for (let count = least; start + count <= this.layerCount; count++) {
      // Memory only grows with the range: once it does not fit, no longer range will.
      if (stageMemory(this.input, start, count, isCoordinator).totalBytes > node.offeredBytes) break
      const rest = this.from(nodeIndex + 1, start + count)
      if (rest === undefined) continue
      const candidate = {
        sentBytes: rest.sentBytes + (isCoordinator ? 0 : this.bytesToSend(node.id, start, count)),
        slowestStageTime: Math.max(rest.slowestStageTime, count / node.speed),
        counts: [count, ...rest.counts]
      }
      if (best === undefined || candidate.sentBytes < best.sentBytes ||
          (candidate.sentBytes === best.sentBytes && candidate.slowestStageTime < best.slowestStageTime)) best = candidate
    }
    this.memo.set(key, best)
    return best
  }

  /** Weight bytes of layers `start .. start + count - 1` that worker `nodeId` did not hold before. */
  private bytesToSend (nodeId: string, start: number, count: number): number {
    const before = this.held.get(nodeId)
    let bytes = 0
    for (let layer = start; layer < start + count; layer++) {
      const wasHeld = before !== undefined && layer >= before.firstLayer && layer < before.firstLayer + before.layerCount
      if (!wasHeld) bytes += this.input.model.layerWeightBytes[layer]
    }
    return bytes
  }
}
