import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { describeExit } from '../../engine/child-process.js'
import { GroupRouter } from '../../engine/group-router.js'
import { startLlamaServer, type LlamaServer } from '../../engine/llama-server.js'
import { renderLlamaServerArgs, type LayoutGroup, type ServingLayout, type Stage, type StagePlan } from '../../scheduler/index.js'
import { groupKey } from './serving-plan.js'
import type { RpcTunnel, TunnelListenerOptions } from '../../protocols/rpc-tunnel/index.js'

/** One replica group as it runs: its plan, its llama-server and the tunnel listeners to its own workers. */
export interface RunningGroup {
  /** the group's id in metrics and status, kept while it runs */
  id: string
  key: string
  plan: StagePlan
  server: LlamaServer
  /** the tunnel listeners its llama-server reaches its workers through */
  endpoints: string[]
}

export interface ReplicaGroupsInit {
  modelPath: string
  /** where each group's llama-server gets its UNIX socket */
  socketDir: string
  /** each group's context per generation, reported while no group serves */
  contextSize: number
  /** compute threads of each llama-server (default: the CPU budget's) */
  threads?: number
  tunnel: Pick<RpcTunnel, 'openListener' | 'closeListener'>
  /** how to open the listener for one worker stage of a group's plan (failure reports, traffic, message cap) */
  listenerOptions: (plan: StagePlan, stage: Stage) => TunnelListenerOptions
  /** a group's llama-server exited on its own */
  exited: (group: RunningGroup, why: string) => void
}

/**
 * The coordinator's replica groups: one llama-server per group, each on its own UNIX socket
 * with tunnel listeners to its own workers, behind one GroupRouter that the serving engine
 * serves from. A layout change keeps the groups that stay the same running, so a change in
 * one group (a lost or returning worker) never restarts another.
 */
export class ReplicaGroups {
  readonly #init: ReplicaGroupsInit
  readonly #running = new Map<string, RunningGroup>()
  #router: GroupRouter | undefined
  #nextId = 1

  constructor (init: ReplicaGroupsInit) {
    this.#init = init
  }

  /** The router of the last load, while its groups run. */
  get router (): GroupRouter | undefined {
    return this.#router
  }

  /** The groups running now, in the order they started. */
  get groups (): RunningGroup[] {
    return [...this.#running.values()]
  }

  /**
   * Starts every group of `layout` behind a new router, for the serving engine to swap in (the
   * previous router's groups are its to dispose). Stops what it started if one group fails.
   */
  async load (layout: ServingLayout): Promise<GroupRouter> {
    this.#running.clear()
    const router = new GroupRouter(this.#init.modelPath, this.#init.contextSize)
    this.#router = router
    await this.#startAll(router, layout.groups, true)
    return router
  }

  /** True when `layout` keeps at least one running group as it is, so that a change in place serves throughout. */
  sharesGroupWith (layout: ServingLayout): boolean {
    const running = new Set(this.groups.map(group => group.key))
    return this.#router !== undefined && layout.groups.some(group => running.has(groupKey(group.plan)))
  }

  /** Moves the running groups to `layout` in place: same groups stay, others stop, new ones start and join the router. */
  async change (layout: ServingLayout): Promise<void> {
    const router = this.#router
    if (router === undefined) throw new Error('no replica groups are loaded to change')
    const wanted = new Set(layout.groups.map(group => groupKey(group.plan)))
    for (const group of this.groups) {
      if (!wanted.has(group.key)) await this.stop(group)
    }
    const running = new Set(this.groups.map(group => group.key))
    await this.#startAll(router, layout.groups.filter(group => !running.has(groupKey(group.plan))), false)
  }

  // Groups load side by side. When one fails, a full load stops the others too; a change keeps
  // those that started, serving beside the groups already running.
  async #startAll (router: GroupRouter, groups: readonly LayoutGroup[], allOrNothing: boolean): Promise<void> {
    const results = await Promise.allSettled(groups.map(async group => await this.#start(router, group)))
    const failed = results.find(result => result.status === 'rejected')
    if (failed === undefined) return
    if (allOrNothing) await Promise.all(this.groups.map(async group => { await this.stop(group) }))
    throw failed.reason
  }

  /** The running group of `server`, if it is one. */
  groupOf (server: LlamaServer): RunningGroup | undefined {
    return this.groups.find(group => group.server === server)
  }

  /** Takes a group out of the router and stops it: its tunnels first, so that a llama-server waiting on a lost worker ends at once. */
  async stop (group: RunningGroup): Promise<void> {
    if (this.#running.get(group.id) !== group) return
    this.#running.delete(group.id)
    this.#router?.remove(group.id)
    await Promise.all(group.endpoints.map(async endpoint => { await this.#init.tunnel.closeListener(endpoint) }))
    await group.server.dispose()
  }

  async #start (router: GroupRouter, group: LayoutGroup): Promise<void> {
    const id = String(this.#nextId++)
    const endpoints: Record<string, string> = {}
    const opened: string[] = []
    try {
      for (const stage of group.plan.stages.slice(1)) {
        const options = this.#init.listenerOptions(group.plan, stage)
        const endpoint = await this.#init.tunnel.openListener(peerIdFromString(stage.nodeId), options).catch((err: Error) => {
          // A worker that cannot be told its cap cannot serve this plan either: the next plan leaves it out.
          options.onFailure?.(err)
          throw err
        })
        endpoints[stage.nodeId] = endpoint
        opened.push(endpoint)
      }
      const server = await startLlamaServer({
        modelPath: this.#init.modelPath,
        threads: this.#init.threads,
        contextSize: group.plan.contextSize,
        parallel: group.plan.parallel,
        listen: { socketPath: join(this.#init.socketDir, `llama-server-${id}.sock`) },
        extraArgs: renderLlamaServerArgs(group.plan, endpoints)
      })
      const running: RunningGroup = { id, key: groupKey(group.plan), plan: group.plan, server, endpoints: opened }
      this.#running.set(id, running)
      router.add(id, server, group.speed)
      void server.exited.then(exit => {
        if (this.#running.get(id) === running) this.#init.exited(running, `llama-server ${describeExit(exit)}`)
      })
    } catch (err) {
      await Promise.all(opened.map(async endpoint => { await this.#init.tunnel.closeListener(endpoint) }))
      throw err
    }
  }
}
