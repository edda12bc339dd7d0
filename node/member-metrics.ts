import { Gauge, type Registry } from 'prom-client'
import type { MemberState } from './failure-detector.js'
import type { MemberStatus } from './status-report.js'

const STATES: readonly MemberState[] = ['alive', 'suspect', 'dead', 'revoked']

/**
 * Gauges of every member's state (one series per state, 1 for the current one, as Prometheus
 * represents an enum) and of the round-trip time to each connected peer, read from `members`
 * at each scrape.
 */
export function registerMemberMetrics (registry: Registry, members: () => Promise<MemberStatus[]>): void {
  const registers = [registry]
  new Gauge({
    name: 'llmesh_member_state',
    help: 'State of each cluster member as this node sees it: 1 for the current state',
    labelNames: ['peer', 'role', 'state'],
    registers,
    async collect () {
      this.reset()
      for (const member of await members()) {
        for (const state of STATES) this.set({ peer: member.peerId, role: member.role, state }, member.state === state ? 1 : 0)
      }
    }
  })
  new Gauge({
    name: 'llmesh_peer_rtt_seconds',
    help: 'Round-trip time to each connected member, from libp2p\'s connection monitor pings',
    labelNames: ['peer'],
    registers,
    async collect () {
      this.reset()
      for (const member of await members()) {
        if (member.rttMs !== null) this.set({ peer: member.peerId }, member.rttMs / 1000)
      }
    }
  })
}
