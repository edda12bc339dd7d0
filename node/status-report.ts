import type { Role } from './certificate.js'
import type { MemberState } from './failure-detector.js'
import type { EngineStatus } from './serving/engine-status.js'
import type { MemoryLockStatus } from '../engine/process-hardening.js'
import type { RpcServerState } from '../engine/rpc-server.js'

/** This node, as `mesh status --json` shows it. */
export interface SelfStatus {
  peerId: string
  role: Role
  clusterId: string
  addresses: string[]
  llamaCppTag: string
  memoryBytes: number
  apiPort: number
  /** the TCP port of this worker's tunnel data channel (TLS, serving only the coordinator's key); null where it has none */
  tunnelDataChannelPort: number | null
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
  /** a worker's time per generated token, split into compute and transfer; null until the tunnel timed a token */
  timePerToken: TokenTime | null
}

/** A worker's share of the time per generated token, from the tunnel's per-command timing. */
export interface TokenTime {
  /** rpc-server working on the worker's stage */
  computeMs: number
  /** moving requests and results over the network */
  transferMs: number
}

/** Something `mesh status` warns about. */
export interface StatusWarning {
  kind: 'bottleneck' | 'memory' | 'version' | 'flapping' | 'no-memory'
  /** the member it is about */
  peerId: string
  /** one sentence: what is wrong and what to do */
  message: string
}

/** A worker's supervised rpc-server, as `mesh status --json` shows it. */
export interface RpcServerStatus {
  /** 'failed' once it crashed too often to be restarted again */
  state: RpcServerState
  /** why it failed; null unless failed */
  reason: string | null
  /** restarts after crashes since the node started */
  restarts: number
}

/** The whole answer of the control endpoint's "status" request. */
export interface StatusReport {
  self: SelfStatus
  members: MemberStatus[]
  /** the coordinator's engine and stage plan; null on workers and on a coordinator serving no model */
  engine: EngineStatus | null
  /** a worker's rpc-server; null on a coordinator */
  rpcServer: RpcServerStatus | null
  /** `--mlock`: whether this node's llama-server or rpc-server memory is locked in RAM, or why the machine refused */
  memoryLock: MemoryLockStatus
  /** bottleneck stage, member near its memory limit, version mismatch, flapping member */
  warnings: StatusWarning[]
}
