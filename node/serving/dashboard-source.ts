import type { DashboardSource } from '../../api/dashboard/dashboard.js'
import type { MemberChange } from '../../api/dashboard/feed.js'
import type { MeshNode } from '../mesh-node.js'

const CHANGES: ReadonlyArray<MemberChange['change']> = ['join', 'leave', 'suspect', 'dead', 'failed', 'revoked']

/** What the coordinator's web dashboard reads of this node: its status, member changes, audit ledger and restarts. */
export function dashboardSource (node: MeshNode): DashboardSource {
  return {
    status: async () => await node.status(),
    onMemberChange: listener => {
      const listeners = CHANGES.map(change => {
        const onChange = (peerId: string): void => { listener({ peerId, change }) }
        node.events.on(change, onChange)
        return () => { node.events.off(change, onChange) }
      })
      return () => { for (const stop of listeners) stop() }
    },
    recentAudit: async count => await node.audit.tail(count),
    restarts: async () => {
      const metric = await node.metrics.registry.getSingleMetric('llmesh_engine_restarts_total')?.get()
      return metric?.values.reduce((sum, { value }) => sum + value, 0) ?? 0
    }
  }
}
