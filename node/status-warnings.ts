import { formatBytes } from '../scheduler/index.js'
import { FLAP_WINDOW_MS } from './member-flaps.js'
import { shortPeerId } from './short-peer-id.js'
import type { StagePlan } from '../scheduler/index.js'
import type { MemberStatus, SelfStatus, StatusWarning } from './status-report.js'

/** A stage whose share of the work is this much above the next slowest is the bottleneck. */
export const BOTTLENECK_RATIO = 1.5
/** A member whose stage needs this share of the memory it offers is near its limit. */
export const MEMORY_WARNING_SHARE = 0.9
/** This many losses of contact within the flap window make a member flapping. */
export const FLAP_WARNING_COUNT = 3

export interface WarningInput {
  self: SelfStatus
  members: readonly MemberStatus[]
  /** the plan of every replica group the layout has (one for a single pipeline, none while no layout is planned) */
  plans: readonly StagePlan[]
  /** losses of contact with a member in the recent window (see MemberFlaps) */
  flaps: (peerId: string) => number
  /** the coordinator's compute speed, to weigh its own stage */
  selfComputeGflops: number
}

/** What `mesh status` warns about: a bottleneck stage, a member near its memory limit, a version mismatch, a flapping member, a worker that lends nothing. */
export function statusWarnings (input: WarningInput): StatusWarning[] {
  return [...bottleneck(input), ...memory(input), ...versions(input), ...flapping(input), ...noMemory(input)]
}

// Stages' time per token in one group: the workers' as the tunnel measured them when every
// worker's is known (the coordinator's own stage is not measured), else every stage's layers
// over its node's speed.
function stageCosts (input: WarningInput, plan: StagePlan): Array<{ peerId: string, cost: number, measured: boolean }> {
  const byId = new Map(input.members.map(m => [m.peerId, m]))
  const stages = plan.stages.filter(stage => stage.layerCount > 0)
  const workers = stages.filter(stage => stage.nodeId !== input.self.peerId)
  const measured = workers.map(stage => ({ peerId: stage.nodeId, time: byId.get(stage.nodeId)?.timePerToken ?? null }))
  if (measured.every(m => m.time !== null)) return measured.map(m => ({ peerId: m.peerId, cost: (m.time?.computeMs ?? 0) + (m.time?.transferMs ?? 0), measured: true }))
  return stages.map(stage => {
    const speed = stage.nodeId === input.self.peerId ? input.selfComputeGflops : byId.get(stage.nodeId)?.computeGflops ?? null
    return { peerId: stage.nodeId, cost: stage.layerCount / (speed ?? 1), measured: false }
  })
}

/** "in replica group N" where the layout has several groups, else nothing. */
function inGroup (input: WarningInput, index: number): string {
  return input.plans.length > 1 ? ` in replica group ${index + 1}` : ''
}

// A group's stages run one after another, so each group has its own bottleneck.
function bottleneck (input: WarningInput): StatusWarning[] {
  return input.plans.flatMap((plan, index) => {
    const costs = stageCosts(input, plan)
    if (costs.length < 2) return []
    const [slowest, next] = [...costs].sort((a, b) => b.cost - a.cost)
    if (next.cost <= 0 || slowest.cost / next.cost < BOTTLENECK_RATIO) return []
    const ratio = (slowest.cost / next.cost).toFixed(1)
    const what = slowest.measured ? `takes ${slowest.cost.toFixed(1)} ms per token, ${ratio}x the next slowest worker` : `has ${ratio}x the work per unit of speed of the next slowest stage`
    return [{ kind: 'bottleneck' as const, peerId: slowest.peerId, message: `the stage on ${shortPeerId(slowest.peerId)}${inGroup(input, index)} is the bottleneck: it ${what}; give it fewer layers (--stages) or a faster machine` }]
  })
}

// A node's memory is charged for each of its stages: the coordinator has one in every group.
function memory (input: WarningInput): StatusWarning[] {
  const nodes = new Map<string, { neededBytes: number, offeredBytes: number, stages: number }>()
  for (const stage of input.plans.flatMap(plan => plan.stages)) {
    const node = nodes.get(stage.nodeId) ?? { neededBytes: 0, offeredBytes: stage.offeredBytes, stages: 0 }
    node.neededBytes += stage.memory.totalBytes
    node.stages++
    nodes.set(stage.nodeId, node)
  }
  return [...nodes]
    .filter(([, node]) => node.offeredBytes > 0 && node.neededBytes / node.offeredBytes >= MEMORY_WARNING_SHARE)
    .map(([peerId, node]) => ({
      kind: 'memory',
      peerId,
      message: `${shortPeerId(peerId)} is near its memory limit: ${node.stages > 1 ? `its stages in ${node.stages} replica groups need` : 'its stage needs'} ${formatBytes(node.neededBytes)} of the ${formatBytes(node.offeredBytes)} it offers (${Math.round(100 * node.neededBytes / node.offeredBytes)}%)`
    }))
}

function versions (input: WarningInput): StatusWarning[] {
  return input.members
    .filter(m => m.state !== 'revoked' && m.llamaCppTag !== input.self.llamaCppTag)
    .map(m => ({ kind: 'version', peerId: m.peerId, message: `${shortPeerId(m.peerId)} runs llama.cpp ${m.llamaCppTag}, this node ${input.self.llamaCppTag}: update it to the same llmesh release` }))
}

function flapping (input: WarningInput): StatusWarning[] {
  return input.members
    .filter(m => m.state !== 'revoked' && input.flaps(m.peerId) >= FLAP_WARNING_COUNT)
    .map(m => ({ kind: 'flapping', peerId: m.peerId, message: `${shortPeerId(m.peerId)} is flapping: it lost contact ${input.flaps(m.peerId)} times in the last ${FLAP_WINDOW_MS / 60_000} minutes; check its network and load` }))
}

// A worker offers nothing when its rpc-server was given up on (or it was started with no memory to lend).
function noMemory (input: WarningInput): StatusWarning[] {
  return input.members
    .filter(m => m.role === 'worker' && m.state === 'alive' && m.memoryBytes === 0)
    .map(m => ({ kind: 'no-memory', peerId: m.peerId, message: `${shortPeerId(m.peerId)} offers no memory, so no plan uses it; if its rpc-server keeps crashing ("mesh status" on it says why), fix that and restart it` }))
}
