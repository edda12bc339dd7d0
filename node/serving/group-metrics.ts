import { Gauge, type Registry } from 'prom-client'
import type { GroupLoad } from '../../engine/group-router.js'

/**
 * Per replica group gauges on GET /metrics: slots, active requests and tokens per second,
 * labelled by the group's id. Read when scraped, from the groups serving then.
 */
export class GroupMetrics {
  constructor (registry: Registry, loads: () => readonly GroupLoad[]) {
    const registers = [registry]
    const gauge = (name: string, help: string, value: (load: GroupLoad) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['group'],
        registers,
        collect () {
          // Groups that stopped since the last scrape must not linger.
          this.reset()
          for (const load of loads()) this.set({ group: load.group }, value(load))
        }
      })
    }
    gauge('llmesh_group_slots', 'Requests a replica group\'s llama-server generates at once', load => load.slots)
    gauge('llmesh_group_active_requests', 'Requests a replica group generates now', load => load.active)
    gauge('llmesh_group_tokens_per_second', 'Tokens a replica group generated per second over the last 10 s', load => load.tokensPerSecond)
  }
}
