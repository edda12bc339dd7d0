import type { Role } from './certificate.js'
import type { MemberState } from './failure-detector.js'
import type { EngineStatus } from './coordinator.js'

/** This node, as `mesh status --json` shows it. */
export interface SelfStatus {
  peerId: string
  role: Role
  clusterId: string
  addresses: string[]
  llamaCppTag: string
  memoryBytes: number
  apiPort: number
}

/** One member, as `mesh status --json` shows it. */
export interface MemberStatus {
  peerId: string
  role: Role
  state: MemberState
  /** addresses of the live connections */
  addresses: string[]
  /** 'tcp' or 'quic', null without a live connection */
  transport: string | null
  /** encryption protocol of the live connection, e.g. '/noise' */
  encryption: string | null
  rttMs: number | null
  /** milliseconds since the member was last heard from; null if never */
  lastSeenMs: number | null
  llamaCppTag: string
  memoryBytes: number | null
  cpuCores: number | null
  computeGflops: number | null
}

/** The whole answer of the control endpoint's "status" request. */
export interface StatusReport {
  self: SelfStatus
  members: MemberStatus[]
  /** the coordinator's engine and stage plan; null on workers and on a coordinator serving no model */
  engine: EngineStatus | null
}
