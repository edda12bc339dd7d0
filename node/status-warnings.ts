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
  /** the stage plan the engine runs, if any */
  plan: StagePlan | null
  /** losses of contact with a member in the recent window (see MemberFlaps) */
  flaps: (peerId: string) => number
  /** the coordinator's compute speed, to weigh its own stage */
  selfComputeGflops: number
}

/** What `mesh status` warns about: a bottleneck stage, a member near its memory limit, a version mismatch, a flapping member, a worker that lends nothing. */
export function statusWarnings (input: WarningInput): StatusWarning[] {
  return [...bottleneck(input), ...memory(input), ...versions(input), ...flapping(input), ...noMemory(input)]
}

// Stages' time per token: the workers' as the tunnel measured them when every worker's is known
// (the coordinator's own stage is not measured), else every stage's layers over its node's speed.
function stageCosts (input: WarningInput): Array<{ peerId: string, cost: number, measured: boolean }> {
  if (input.plan === null) return []
  const byId = new Map(input.members.map(m => [m.peerId, m]))
  const stages = input.plan.stages.filter(stage => stage.layerCount > 0)
  const workers = stages.filter(stage => stage.nodeId !== input.self.peerId)
  const measured = workers.map(stage => ({ peerId: stage.nodeId, time: byId.get(stage.nodeId)?.timePerToken ?? null }))
  if (measured.every(m => m.time !== null)) return measured.map(m => ({ peerId: m.peerId, cost: (m.time?.computeMs ?? 0) + (m.time?.transferMs ?? 0), measured: true }))
  return stages.map(stage => {
    const speed = stage.nodeId === input.self.peerId ? input.selfComputeGflops : byId.get(stage.nodeId)?.computeGflops ?? null
    return { peerId: stage.nodeId, cost: stage.layerCount / (speed ?? 1), measured: false }
  })
}

function bottleneck (input: WarningInput): StatusWarning[] {
  const costs = stageCosts(input)
  if (costs.length < 2) return []
  const [slowest, next] = [...costs].sort((a, b) => b.cost - a.cost)
  if (next.cost <= 0 || slowest.cost / next.cost < BOTTLENECK_RATIO) return []
  const ratio = (slowest.cost / next.cost).toFixed(1)
  const what = slowest.measured ? `takes ${slowest.cost.toFixed(1)} ms per token, ${ratio}x the next slowest worker` : `has ${ratio}x the work per unit of speed of the next slowest stage`
  return [{ kind: 'bottleneck', peerId: slowest.peerId, message: `the stage on ${shortPeerId(slowest.peerId)} is the bottleneck: it ${what}; give it fewer layers (--stages) or a faster machine` }]
}

function memory (input: WarningInput): StatusWarning[] {
  if (input.plan === null) return []
  return input.plan.stages
    .filter(stage => stage.offeredBytes > 0 && stage.memory.totalBytes / stage.offeredBytes >= MEMORY_WARNING_SHARE)
    .map(stage => ({
      kind: 'memory',
      peerId: stage.nodeId,
      message: `${shortPeerId(stage.nodeId)} is near its memory limit: its stage needs ${formatBytes(stage.memory.totalBytes)} of the ${formatBytes(stage.offeredBytes)} it offers (${Math.round(100 * stage.memory.totalBytes / stage.offeredBytes)}%)`
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
