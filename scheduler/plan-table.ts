import { formatBytes } from './format-bytes.js'
import { formatLayerRange } from './layer-range.js'
import type { ServingLayout, StagePlan } from './types.js'

const HEADERS = ['stage', 'node', 'role', 'layers', 'weights', 'KV cache', 'embd+head', 'compute', 'total', 'offered']

/** The plan as a table for people, one row per stage, plus notes on the head and unused workers. */
export function renderPlanTable (plan: StagePlan): string {
  const rows = plan.stages.map((stage, index) => [
    String(index),
    stage.nodeId,
    stage.role,
    formatLayerRange(stage.firstLayer, stage.layerCount),
    formatBytes(stage.memory.weightBytes),
    formatBytes(stage.memory.kvCacheBytes),
    stage.memory.embeddingAndHeadBytes > 0 ? formatBytes(stage.memory.embeddingAndHeadBytes) : '-',
    formatBytes(stage.memory.computeBytes),
    formatBytes(stage.memory.totalBytes),
    formatBytes(stage.offeredBytes)
  ])
  const widths = HEADERS.map((header, column) => Math.max(header.length, ...rows.map(row => row[column].length)))
  const line = (cells: string[]): string => cells.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd()
  const notes = [
    `${plan.layerCount} layers, context ${plan.contextSize} tokens in ${plan.parallel} slot(s), KV cache ${plan.kvCacheType}, privacy ${plan.privacy}; embedding and output head on the coordinator`
  ]
  if (plan.unusedWorkers.length > 0) notes.push(`unused workers (no layers): ${plan.unusedWorkers.join(', ')}`)
  return [line(HEADERS), ...rows.map(line), ...notes].join('\n')
}

/** A layout as tables for people: the plan table itself for one group, else one titled table per group. */
export function renderLayoutTable (layout: ServingLayout): string {
  if (layout.groups.length === 1) return renderPlanTable(layout.groups[0].plan)
  const groups = layout.groups.map((group, index) => `group ${index + 1} of ${layout.groups.length} (own llama-server):\n${renderPlanTable(group.plan)}`)
  if (layout.unusedWorkers.length > 0) groups.push(`workers in no group: ${layout.unusedWorkers.join(', ')}`)
  return groups.join('\n\n')
}
