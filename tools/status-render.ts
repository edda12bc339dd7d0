import { shortPeerId } from '../node/short-peer-id.js'
import { formatBytes, type Stage, type StagePlan } from '../scheduler/index.js'
import { formatLayerRange } from '../scheduler/layer-range.js'
import type { EngineStatus } from '../node/serving/engine-status.js'
import type { MemberStatus, StatusReport } from '../node/status-report.js'
import type { MemoryLockStatus } from '../engine/process-hardening.js'

/** `mesh status` fits a terminal this wide. */
export const STATUS_WIDTH = 100

const GAP = '  '

function formatMemory (bytes: number | null): string {
  return bytes === null ? '-' : formatBytes(bytes)
}

function formatAge (ms: number | null): string {
  if (ms === null) return 'never'
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)}s ago` : `${Math.round(ms / 60_000)}m ago`
}

function formatMs (ms: number | null | undefined): string {
  return ms == null ? '-' : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`
}

// The connection's address without its /p2p/ part (the PEER column already names the peer).
function formatAddress (addresses: readonly string[]): string {
  const addr = addresses[0]
  if (addr === undefined) return '-'
  const match = /^\/(ip4|ip6|dns4|dns6|dns)\/([^/]+)\/(tcp|udp)\/(\d+)/.exec(addr)
  if (match === null) return addr.replace(/\/p2p\/.*$/, '')
  return match[1] === 'ip6' ? `[${match[2]}]:${match[4]}` : `${match[2]}:${match[4]}`
}

/** `prefix` then `text` broken at spaces into lines of at most `width` characters; later lines start with spaces as wide as `prefix`. */
export function wrap (prefix: string, text: string, width: number): string[] {
  const indent = ' '.repeat(prefix.length)
  const lines: string[] = []
  let line = prefix
  let filled = false
  for (const word of text.split(' ')) {
    if (filled && line.length + 1 + word.length > width) {
      lines.push(line)
      line = indent + word
    } else {
      line = filled ? `${line} ${word}` : line + word
    }
    filled = true
  }
  lines.push(line)
  return lines.map(l => fit(l, width))
}

/** Cuts `text` to `width` characters, marking the cut with "…"; `fromStart` keeps the end (paths). */
export function fit (text: string, width: number, fromStart = false): string {
  if (text.length <= width) return text
  if (width < 1) return ''
  return fromStart ? `…${text.slice(text.length - width + 1)}` : `${text.slice(0, width - 1)}…`
}

/**
 * Lays out rows as columns separated by two spaces. When the table is wider than `maxWidth`,
 * column `shrink` is cut (with "…") until it fits.
 */
export function table (rows: string[][], maxWidth = STATUS_WIDTH, shrink?: number): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map(r => r[i].length)))
  const total = widths.reduce((a, b) => a + b, 0) + GAP.length * (widths.length - 1)
  if (shrink !== undefined && total > maxWidth) widths[shrink] = Math.max(rows[0][shrink].length, widths[shrink] - (total - maxWidth))
  return rows.map(r => r.map((cell, i) => fit(cell, widths[i]).padEnd(widths[i])).join(GAP).trimEnd())
}

function memberRow (m: MemberStatus): string[] {
  return [
    shortPeerId(m.peerId), m.role, m.state, formatAddress(m.addresses),
    m.transport === null ? '-' : `${m.transport}/${(m.encryption ?? '?').replace(/^\//, '')}`,
    m.rttMs === null ? '-' : `${m.rttMs} ms`, formatAge(m.lastSeenMs), formatMemory(m.memoryBytes)
  ]
}

function stageRow (stage: Stage, index: number, members: ReadonlyMap<string, MemberStatus>): string[] {
  const layers = formatLayerRange(stage.firstLayer, stage.layerCount)
  const time = members.get(stage.nodeId)?.timePerToken ?? null
  return [
    String(index), shortPeerId(stage.nodeId), layers,
    formatBytes(stage.memory.weightBytes), formatBytes(stage.memory.totalBytes), formatBytes(stage.offeredBytes),
    formatMs(time?.computeMs), formatMs(time?.transferMs)
  ]
}

function privacyLine (plan: StagePlan): string {
  const coordinator = plan.stages[0]
  const range = formatLayerRange(coordinator.firstLayer, coordinator.layerCount)
  const own = coordinator.layerCount === 0 ? 'no layers' : `${coordinator.layerCount === 1 ? 'layer' : 'layers'} ${range}`
  return `${plan.privacy}: the coordinator keeps ${own}, the embedding and the output head`
}

function slotsText (slots: number | null): string {
  return slots === null ? '' : ` in ${slots} slot${slots === 1 ? '' : 's'}`
}

// One pipeline: its shape, its privacy placement and a row per stage.
function planLines (plan: StagePlan, members: ReadonlyMap<string, MemberStatus>): string[] {
  const lines = [
    fit(`plan     ${plan.layerCount} layers in ${plan.stages.length} stage(s), context ${plan.contextSize} tokens in ${plan.parallel} slot(s), KV cache ${plan.kvCacheType}`, STATUS_WIDTH),
    fit(`privacy  ${privacyLine(plan)}`, STATUS_WIDTH)
  ]
  // Stage 0 is the coordinator's; TOTAL is weights, KV cache and compute buffers together.
  const header = ['STAGE', 'NODE', 'LAYERS', 'WEIGHTS', 'TOTAL', 'OFFERED', 'COMPUTE/TOK', 'XFER/TOK']
  lines.push('', ...table([header, ...plan.stages.map((stage, i) => stageRow(stage, i, members))]))
  if (plan.unusedWorkers.length > 0) lines.push(fit(`unused workers (no layers): ${plan.unusedWorkers.map(shortPeerId).join(', ')}`, STATUS_WIDTH))
  return lines
}

// The coordinator has a stage in every group, each with its own copy of its layers and its own
// KV cache: the sum is what its memory is charged, which no single group's table shows.
function coordinatorShare (plans: readonly StagePlan[]): string[] {
  const stages = plans.map(plan => plan.stages[0])
  const needed = stages.reduce((sum, stage) => sum + stage.memory.totalBytes, 0)
  return [fit(`memory   the coordinator's parts of ${plans.length} groups take ${formatBytes(needed)} of the ${formatBytes(stages[0].offeredBytes)} it offers`, STATUS_WIDTH)]
}

function engineLines (engine: EngineStatus, members: ReadonlyMap<string, MemberStatus>): string[] {
  const serving = engine.kind != null ? `${engine.state} (${engine.kind})` : engine.state
  const lines = [
    ...wrap('engine   ', `${serving}${engine.reason != null ? `: ${engine.reason}` : ''}`, STATUS_WIDTH),
    `model    ${fit(engine.model, STATUS_WIDTH - 9, true)}`,
    fit(`api      ${engine.apiUrl}`, STATUS_WIDTH),
    `load     ${engine.load.tokensPerSecond.toFixed(1)} tokens/s, ${engine.load.queueDepth} queued, ${engine.load.activeStreams} generating${slotsText(engine.slots)}`
  ]
  const groups = engine.groups ?? []
  if (groups.length > 1) {
    lines.push(...coordinatorShare(groups.map(group => group.plan)))
    groups.forEach((group, index) => {
      // A group planned but not running (crashed beside the others, or still loading) has no id yet.
      const title = group.id !== null ? `group ${index + 1} (id ${group.id}): ${group.tokensPerSecond.toFixed(1)} tokens/s, ${group.activeRequests} generating${slotsText(group.slots)}` : `group ${index + 1}: not running`
      lines.push('', fit(title, STATUS_WIDTH), ...planLines(group.plan, members))
    })
    if ((engine.unusedWorkers ?? []).length > 0) lines.push(fit(`workers in no group: ${(engine.unusedWorkers ?? []).map(shortPeerId).join(', ')}`, STATUS_WIDTH))
  } else if (engine.plan !== null) {
    lines.push(...planLines(engine.plan, members))
  } else if (engine.planTable !== null) {
    lines.push(fit(`plan     ${engine.planTable}`, STATUS_WIDTH))
  }
  return lines
}

function memoryLockText (lock: MemoryLockStatus): string {
  switch (lock.state) {
    case 'off': return 'off: weights and KV cache may reach swap (start with --mlock to lock them)'
    case 'pending': return 'requested; no llama-server or rpc-server has started yet'
    case 'locked': return 'locked: llama-server and rpc-server memory stays in RAM'
    case 'not allowed': return `requested but not allowed by this machine: ${lock.reason ?? 'no reason given'}`
  }
}

/** The human form of `mesh status`: every line at most STATUS_WIDTH columns. */
export function renderStatus (report: StatusReport): string[] {
  const { self } = report
  const lines = [
    fit(`node     ${self.role} ${self.peerId}`, STATUS_WIDTH),
    fit(`cluster  ${self.clusterId}, llama.cpp ${self.llamaCppTag}, offers ${formatBytes(self.memoryBytes)}`, STATUS_WIDTH),
    ...wrap('mlock    ', memoryLockText(report.memoryLock), STATUS_WIDTH),
    ''
  ]
  // llama.cpp tags are left out to fit: a member whose tag differs is a warning below.
  const header = ['PEER', 'ROLE', 'STATE', 'ADDRESS', 'TRANSPORT', 'RTT', 'LAST SEEN', 'MEMORY']
  if (report.members.length === 0) lines.push('no other members known yet')
  else lines.push(...table([header, ...report.members.map(memberRow)], STATUS_WIDTH, 3))
  if (report.rpcServer != null) {
    const { state, reason, restarts } = report.rpcServer
    lines.push('', ...wrap('rpc-server ', `${state}${reason !== null ? `: ${reason}` : ''} (${restarts} restart${restarts === 1 ? '' : 's'})`, STATUS_WIDTH))
  }
  if (report.engine != null) lines.push('', ...engineLines(report.engine, new Map(report.members.map(m => [m.peerId, m]))))
  // A worker's rpc-server: restarted after crashes, or given up on ('failed' with the reason).
  if (report.rpcServer != null) {
    const { state, reason, restarts } = report.rpcServer
    lines.push('', fit(`rpc      ${state}${reason != null ? `: ${reason}` : ''} (${restarts} restart${restarts === 1 ? '' : 's'})`, STATUS_WIDTH))
  }
  if (report.warnings.length > 0) {
    lines.push('', 'warnings')
    for (const warning of report.warnings) lines.push(...wrap('  ! ', warning.message, STATUS_WIDTH))
  }
  return lines
}
