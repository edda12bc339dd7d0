import { buildPlan, notEnoughMemoryOnNodes } from './build-plan.js'
import { PlanDoesNotFitError } from './errors.js'
import { formatBytesExact } from './format-bytes.js'
import { formatLayerRange } from './layer-range.js'
import { layerBytes, stageMemory } from './memory.js'
import { checkPlanInput, type CheckedPlanInput } from './plan-input.js'
import type { PlanInput, StagePlan } from './types.js'

// Speed caps are floor(T * speed) where T is a quotient of a layer count and a speed; the
// epsilon keeps a product that should be a whole number from rounding down below it.
const SPEED_CAP_EPSILON = 1e-9

/**
 * Places a model's layers on the coordinator and its workers: one contiguous range per node,
 * the coordinator first (it keeps the embedding, the output head and, under privacy "on", at
 * least layer 0), then the workers in the given order. Layers are shared in proportion to
 * speed as far as memory allows: the plan minimises the slowest stage's layers/speed without
 * putting more on any node than it offers. Throws PlanDoesNotFitError, saying how many bytes
 * are missing and where, when no placement fits; InvalidPlanInputError on malformed input.
 */
export function planStages (input: PlanInput): StagePlan {
  const checked = checkPlanInput(input)
  const placer = new LayerPlacer(checked)
  placer.requireCoordinatorFits()
  const placed = placer.reach(0, 0, Infinity)
  if (placed < checked.model.layerCount) throw placer.unplacedLayersError()
  return buildPlan(checked, placer.balancedCounts(placer.smallestFeasibleStageTime()))
}

class LayerPlacer {
  private readonly layerCosts: number[]
  private readonly budgets: number[]
  private readonly layerCount: number

  constructor (private readonly input: CheckedPlanInput) {
    this.layerCount = input.model.layerCount
    this.layerCosts = input.model.layerWeightBytes.map((_, layer) => {
      const bytes = layerBytes(input, layer)
      return bytes.weightBytes + bytes.kvCacheBytes
    })
    // What each node has left for layers after its fixed costs (compute margin; embedding and head on the coordinator).
    this.budgets = input.nodes.map((node, index) => node.offeredBytes - stageMemory(input, 0, 0, index === 0).totalBytes)
  }

  /** Throws when the coordinator cannot hold its fixed share plus the layers privacy requires. */
  requireCoordinatorFits (): void {
    const { nodes, minCoordinatorLayers } = this.input
    const memory = stageMemory(this.input, 0, minCoordinatorLayers, true)
    const coordinator = nodes[0]
    if (memory.totalBytes <= coordinator.offeredBytes) return
    const what = minCoordinatorLayers > 0 ? `embedding, output head and layer 0 (privacy on)` : 'embedding and output head'
    throw notEnoughMemoryOnNodes([{ nodeId: coordinator.id, what, neededBytes: memory.totalBytes, availableBytes: coordinator.offeredBytes, missingBytes: memory.totalBytes - coordinator.offeredBytes }])
  }

  /**
   * How far nodes from `nodeIndex` on get when each, in order, takes as many layers as its
   * memory and the stage time `maxTime` (layers / speed) allow, starting at layer `start`.
   * Returns -1 when the coordinator cannot take the layers privacy requires. Taking as many
   * as possible is optimal: a later start never lets the following nodes reach less far.
   */
  reach (nodeIndex: number, start: number, maxTime: number): number {
    let position = start
    for (let index = nodeIndex; index < this.input.nodes.length; index++) {
      const taken = this.capacity(index, position, maxTime)
      if (index === 0 && taken < this.input.minCoordinatorLayers) return -1
      position += taken
    }
    return position
  }

  /** The smallest stage time (layers / speed of the slowest stage) for which every layer is placed. */
  smallestFeasibleStageTime (): number {
    const times = new Set<number>()
    for (const node of this.input.nodes) {
      for (let layers = 0; layers <= this.layerCount; layers++) times.add(layers / node.speed)
    }
    const sorted = [...times].sort((a, b) => a - b)
    // The largest time lets every node take every layer, which reach(…, Infinity) proved enough.
    let low = 0
    let high = sorted.length - 1
    while (low < high) {
      const middle = Math.floor((low + high) / 2)
      if (this.reach(0, 0, sorted[middle]) >= this.layerCount) high = middle
      else low = middle + 1
    }
    return sorted[low]
  }

  /**
   * Layer counts per node for a feasible stage time: each node, in order, takes its speed's
   * share of the layers still unplaced, clamped between what the later nodes need it to take
   * and what its memory and the stage time allow.
   */
  balancedCounts (maxTime: number): number[] {
    const { nodes } = this.input
    const counts: number[] = []
    let position = 0
    nodes.forEach((node, index) => {
      const remaining = this.layerCount - position
      const speedOfRest = nodes.slice(index).reduce((sum, next) => sum + next.speed, 0)
      const share = Math.round(remaining * node.speed / speedOfRest)
      const most = this.capacity(index, position, maxTime)
      const least = this.leastToTake(index, position, maxTime, most)
      const count = Math.min(most, Math.max(least, share))
      counts.push(count)
      position += count
    })
    return counts
  }

  /** Builds the error for layers that fit nowhere, from the greedy fill with no speed limit. */
  unplacedLayersError (): PlanDoesNotFitError {
    let position = 0
    let freeBytes = 0
    let largestFree = 0
    this.input.nodes.forEach((_, index) => {
      const taken = this.capacity(index, position, Infinity)
      const used = this.rangeCost(position, taken)
      const free = Math.max(0, this.budgets[index] - used)
      freeBytes += free
      largestFree = Math.max(largestFree, free)
      position += taken
    })
    const unplacedCount = this.layerCount - position
    const unplacedBytes = this.rangeCost(position, unplacedCount)
    // When the free memory adds up but is split into pieces smaller than a layer, at least the
    // next layer's excess over the largest piece is missing.
    const missingBytes = unplacedBytes > freeBytes ? unplacedBytes - freeBytes : this.layerCosts[position] - largestFree
    const what = `layers ${formatLayerRange(position, unplacedCount)}`
    const placedText = position > 0 ? ` after holding layers ${formatLayerRange(0, position)}` : ''
    return new PlanDoesNotFitError(
      `the model does not fit: ${what} need ${formatBytesExact(unplacedBytes)} (weights and KV cache), but the members have only ${formatBytesExact(freeBytes)} free${placedText}, so at least ${formatBytesExact(missingBytes)} more is needed; offer more memory, add a worker, or lower the context size`,
      missingBytes,
      [{ nodeId: null, what, neededBytes: unplacedBytes, availableBytes: freeBytes, missingBytes }]
    )
  }

  /**
   * The fewest layers node `index` can take from `start` so that the nodes after it can still
   * place the rest; a binary search, as taking more never makes the rest harder.
   */
  private leastToTake (index: number, start: number, maxTime: number, most: number): number {
    let low = index === 0 ? this.input.minCoordinatorLayers : 0
    let high = most
    while (low < high) {
      const middle = Math.floor((low + high) / 2)
      if (this.reach(index + 1, start + middle, maxTime) >= this.layerCount) high = middle
      else low = middle + 1
    }
    return low
  }

  /** Layers node `index` can take from `start` within its memory budget and the stage time. */
  private capacity (index: number, start: number, maxTime: number): number {
    const bySpeed = maxTime === Infinity ? this.layerCount : Math.floor(maxTime * this.input.nodes[index].speed + SPEED_CAP_EPSILON)
    const limit = Math.min(bySpeed, this.layerCount - start)
    let used = 0
    let count = 0
    while (count < limit && used + this.layerCosts[start + count] <= this.budgets[index]) {
      used += this.layerCosts[start + count]
      count++
    }
    return count
  }

  private rangeCost (start: number, count: number): number {
    return this.layerCosts.slice(start, start + count).reduce((sum, cost) => sum + cost, 0)
  }
}
