import { Command } from 'commander'
import { controlRequest } from '../../node/control-socket.js'
import { dataDir } from '../../node/data-dir.js'
import { shortPeerId } from '../../node/mesh-node.js'
import { formatBytes } from '../../scheduler/index.js'
import type { EngineStatus } from '../../node/coordinator.js'
import type { MemberStatus, StatusReport } from '../../node/status-report.js'

function formatMemory (bytes: number | null): string {
  return bytes === null ? '-' : formatBytes(bytes)
}

function formatAge (ms: number | null): string {
  if (ms === null) return 'never'
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)}s ago` : `${Math.round(ms / 60_000)}m ago`
}

function row (m: MemberStatus): string[] {
  return [
    shortPeerId(m.peerId), m.role, m.state, m.addresses[0] ?? '-',
    m.transport === null ? '-' : `${m.transport}/${(m.encryption ?? '?').replace(/^\//, '')}`,
    m.rttMs === null ? '-' : `${m.rttMs} ms`, formatAge(m.lastSeenMs), m.llamaCppTag, formatMemory(m.memoryBytes)
  ]
}

/** Lays out rows as left-aligned columns. */
function table (rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map(r => r[i].length)))
  return rows.map(r => r.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd()).join('\n')
}

function describeEngine (engine: EngineStatus): string {
  const serving = engine.kind != null ? `${engine.state} (${engine.kind})` : engine.state
  return [
    `engine  ${serving}${engine.reason != null ? `: ${engine.reason}` : ''}`,
    `model   ${engine.model}`,
    `api     ${engine.apiUrl}`,
    ...(engine.planTable != null ? ['', engine.planTable] : [])
  ].join('\n')
}

/** `mesh status`: the members table of the local running node. */
export function statusCommand (): Command {
  return new Command('status')
    .description('show this node and the cluster members it knows (needs the local node running)')
    .option('--json', 'print {"self":{...},"members":[...],"engine":{...}|null} as one JSON object')
    .action(async (options: { json?: boolean }) => {
      const dir = dataDir()
      const report = await controlRequest(dir.controlSocket, dir.root, { op: 'status' }) as StatusReport
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify(report)}\n`)
        return
      }
      const { self } = report
      process.stdout.write(`${self.role} ${self.peerId} of cluster ${self.clusterId} (llama.cpp ${self.llamaCppTag}, offers ${formatBytes(self.memoryBytes)})\n\n`)
      const header = ['PEER', 'ROLE', 'STATE', 'ADDRESS', 'TRANSPORT', 'RTT', 'LAST SEEN', 'LLAMA.CPP', 'MEMORY']
      process.stdout.write(`${table([header, ...report.members.map(row)])}\n`)
      if (report.engine != null) process.stdout.write(`\n${describeEngine(report.engine)}\n`)
    })
}
