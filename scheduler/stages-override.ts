import { buildPlan } from './build-plan.js'
import { InvalidStagesError } from './errors.js'
import { checkPlanInput } from './plan-input.js'
import type { PlanInput, StagePlan, StageRange } from './types.js'

const RANGE = /^(\d+)(?:-(\d+))?$/

/**
 * Parses a `--stages` value such as "0-9,10-27": one entry per node, the coordinator first,
 * then the workers in order; an entry is "A-B" (inclusive), "A" (one layer) or "none".
 * Checks only the syntax; planFromStages checks the ranges against a model.
 */
export function parseStages (text: string): StageRange[] {
  const entries = text.split(',').map(entry => entry.trim())
  return entries.map(entry => {
    if (entry === 'none') return null
    const match = RANGE.exec(entry)
    if (match == null) {
      throw new InvalidStagesError(`--stages entry "${entry}" is not a layer range; write ranges like 0-9,10-27 (one per node, coordinator first), a single layer like 5, or none`)
    }
    const first = Number(match[1])
    const last = match[2] == null ? first : Number(match[2])
    if (last < first) throw new InvalidStagesError(`--stages entry "${entry}" ends before it starts; write the lower layer first, e.g. ${last}-${first}`)
    return { first, last }
  })
}

/**
 * Builds a plan from hand-written ranges (see parseStages), checked like an automatic plan:
 * the ranges must cover layers 0..n-1 in order with no gap or overlap, the coordinator must
 * keep layer 0 under privacy "on", and no node may need more memory than it offers.
 */
export function planFromStages (input: PlanInput, ranges: readonly StageRange[]): StagePlan {
  const checked = checkPlanInput(input)
  const { layerCount } = checked.model
  if (ranges.length > checked.nodes.length) {
    throw new InvalidStagesError(`--stages lists ${ranges.length} ranges but there are only ${checked.nodes.length} nodes (the coordinator and ${checked.nodes.length - 1} workers); give one range per node at most`)
  }
  const counts: number[] = []
  let next = 0
  for (const range of ranges) {
    if (range == null) {
      counts.push(0)
      continue
    }
    if (range.first !== next) {
      const problem = range.first > next ? `layers ${next}-${range.first - 1} are in no range` : `layer ${range.first} is in two ranges`
      throw new InvalidStagesError(`--stages ranges must follow each other without gap or overlap starting at layer 0, but ${problem}`)
    }
    if (range.last >= layerCount) {
      throw new InvalidStagesError(`--stages range ${range.first}-${range.last} goes past the model's last layer ${layerCount - 1}`)
    }
    counts.push(range.last - range.first + 1)
    next = range.last + 1
  }
  if (next < layerCount) {
    throw new InvalidStagesError(`--stages must cover all ${layerCount} layers of the model, but layers ${next}-${layerCount - 1} are in no range`)
  }
  return buildPlan(checked, counts)
}
