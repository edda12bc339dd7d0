import { readFile } from 'node:fs/promises'
import { basename } from 'node:path'
import { createApiServer, type ApiServerOptions } from '../../api/server.js'
import { ApiMetrics } from '../../api/metrics.js'
import { ObservedEngine } from '../../engine/observed-engine.js'
import { WorkerTokenTimes } from './worker-token-time.js'
import { loadLocalEngine } from '../../engine/local-engine.js'
import { readModelFacts } from '../../engine/model-facts.js'
import { defaultContextSize, inspectModelFile } from '../../engine/model-file.js'
import { RestartPolicy } from '../../engine/restart-policy.js'
import { ServingEngine } from '../../engine/serving-engine.js'
import { messageCapFor, RpcSessionEndedByWorkerError } from '../../protocols/rpc-tunnel/index.js'
import { checkSlots, largestStageTensorBytes, layoutFromPlans, renderLayoutTable, type ModelFacts, type NodeOffer, type Placement, type PrivacyMode, type ServingLayout, type StagePlan, type StageRange } from '../../scheduler/index.js'
import { quietMoment } from './quiet-moment.js'
import { shortPeerId } from '../short-peer-id.js'
import { chooseServingPlan, groupKey, samePlacement, type EngineChoice, type ServingPlan, type ServingPlanInput } from './serving-plan.js'
import { ReplicaGroups, type RunningGroup } from './replica-groups.js'
import { GroupMetrics } from './group-metrics.js'
import { dashboardSource } from './dashboard-source.js'
import type { MeshNode } from '../mesh-node.js'
import type { DataDir } from '../data-dir.js'
import type { Log } from '../log.js'
import type { EngineStatus } from './engine-status.js'
import type { Engine } from '../../engine/engine.js'
import type { FastifyInstance } from 'fastify'

/** How long after a member joins the coordinator re-plans: joins come in bursts. */
const REPLAN_DELAY_MS = 1500

/** After a member is lost the engine is likely broken already: re-plan almost at once (the pause batches simultaneous losses). */
const LOSS_REPLAN_DELAY_MS = 250

/** A returning member waits for a moment without generations before the engine is rebuilt, but no longer than this. */
const FOLD_IN_MAX_DELAY_MS = 30_000

/** A worker whose tunnel failed while its heartbeats still came is left out of plans this long. */
const TUNNEL_FAILURE_HOLD_OFF_MS = 30_000
/**
 * Shorter for a worker that ended a session itself: its rpc-server died and its guardian
 * restarts it within seconds (or gives up, and the worker then offers no memory).
 */
const SESSION_ENDED_HOLD_OFF_MS = 5_000

/** On stop, how long requests in flight get to finish: a long reply at a few tokens per second. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000

/**
 * After a loss, the groups that lost no worker keep serving; the layout planned afresh replaces
 * them (restarting them) only when it is predicted this much faster.
 */
const REGROUP_MIN_GAIN = 1.1

/** At start, how long to wait for members known from earlier runs before the first plan. */
const KNOWN_WORKERS_GRACE_MS = 10_000

export interface CoordinatorInit {
  node: MeshNode
  dir: DataDir
  modelPath: string
  engine: EngineChoice
  privacy: PrivacyMode
  /** a manual `--stages` override */
  stages?: readonly StageRange[]
  /** `--placement`: one pipeline, replica groups, or whichever is predicted faster (default auto) */
  placement?: Placement
  /** `--replicas N`: exactly N replica groups */
  replicas?: number
  /** compute threads of each llama-server (default: the CPU budget's) */
  threads?: number
  /** total context of the engine, in tokens (default: the model's, at most 4096) */
  contextSize?: number
  /**
   * requests the engine generates at once: llama-server's parallel slots or the local engine's
   * sequences, which share the context evenly (default 1)
   */
  parallel?: number
  apiHost: string
  apiPort: number
  /** serve the API over HTTPS with this PEM key and certificate chain (default: plain HTTP) */
  apiTls?: { key: string, cert: string }
  /** serve GET /metrics without an API key (default false) */
  metricsPublic?: boolean
  /** the API's admission queue depth, rate limits and allowed browser origins (default: the API's defaults) */
  apiLimits?: Pick<ApiServerOptions, 'maxQueue' | 'rateLimits' | 'corsOrigins'>
  /** on stop, how long requests in flight may take to finish (default DEFAULT_DRAIN_TIMEOUT_MS) */
  drainTimeoutMs?: number
  log: Log
}

/**
 * The coordinator's serving side: it serves the OpenAI API from one ServingEngine and keeps
 * that engine on the plan the live members allow, re-planning when members join or die.
 */
export class Coordinator {
  readonly #init: CoordinatorInit
  readonly #model: ModelFacts
  readonly #contextSize: number
  readonly #serving: ServingEngine
  readonly #api: FastifyInstance
  readonly #metrics: ApiMetrics
  readonly #tokenTimes: WorkerTokenTimes
  readonly #groups: ReplicaGroups
  #plan: ServingPlan | undefined
  #replanTimer: NodeJS.Timeout | undefined
  #replanDue = 0
  #foldInTimer: NodeJS.Timeout | undefined
  #quietWake = new AbortController()
  // A re-plan that must not wait for a quiet moment (after a loss or a crash) is due.
  #urgentReplan = false
  #replanning: Promise<void> = Promise.resolve()
  // Crashes of llama-server under one placement; a new placement starts over.
  readonly #engineRestarts = new RestartPolicy()
  #stopped = false

  private constructor (init: CoordinatorInit, model: ModelFacts, contextSize: number, serving: ServingEngine, api: FastifyInstance, metrics: ApiMetrics, tokenTimes: WorkerTokenTimes) {
    this.#init = init
    this.#model = model
    this.#contextSize = contextSize
    this.#serving = serving
    this.#api = api
    this.#metrics = metrics
    this.#tokenTimes = tokenTimes
    const { rpcTunnel } = init.node.libp2p.services
    this.#groups = new ReplicaGroups({
      modelPath: init.modelPath,
      socketDir: init.dir.root,
      contextSize,
      threads: init.threads,
      tunnel: rpcTunnel,
      listenerOptions: (plan, stage) => ({
        onFailure: err => { this.#tunnelFailed(stage.nodeId, err) },
        traffic: () => this.#tokenTimes.session(stage.nodeId),
        // The worker refuses any request larger than its stage of this plan can carry.
        maxMessageBytes: messageCapFor(largestStageTensorBytes(this.#model, plan, stage))
      }),
      exited: (group, why) => { void this.#groupExited(group, why) }
    })
  }

  /** Validates the model, starts the API (503 until an engine is ready) and loads the first plan in the background. */
  static async start (init: CoordinatorInit): Promise<Coordinator> {
    const model = await readModelFacts(init.modelPath)
    const contextSize = init.contextSize ?? defaultContextSize(await inspectModelFile(init.modelPath))
    checkSlots(contextSize, init.parallel ?? 1)
    const apiKey = (await readFile(init.dir.apiKey, 'utf8')).trim()
    const serving = new ServingEngine(init.modelPath, contextSize)
    const metrics = new ApiMetrics(init.node.metrics.registry)
    const api = await createApiServer({
      // Tokens are timed where they stream, whichever engine the plan puts behind `serving`.
      engine: new ObservedEngine(serving, metrics),
      metrics: { metrics, registry: init.node.metrics.registry, public: init.metricsPublic ?? false },
      audit: { ledger: init.node.audit, log: init.log },
      tls: init.apiTls,
      dashboard: dashboardSource(init.node),
      apiKey,
      keys: init.node.apiKeys,
      ...init.apiLimits,
      modelName: basename(init.modelPath, '.gguf'),
      readiness: () => ({ ready: serving.state === 'ready', state: serving.state, reason: serving.reason })
    })
    await api.listen({ host: init.apiHost, port: init.apiPort })
    const tokenTimes = new WorkerTokenTimes(init.node.metrics.registry, worker => init.node.rttMs(worker))
    const coordinator = new Coordinator(init, model, contextSize, serving, api, metrics, tokenTimes)
    init.node.reportTokenTimes(worker => tokenTimes.tokenTime(worker, init.node.rttMs(worker)))
    init.node.reportEngineStatus(() => coordinator.status())
    new GroupMetrics(init.node.metrics.registry, () => coordinator.#serving.state === 'ready' ? coordinator.#groups.router?.loads() ?? [] : [])
    for (const event of ['leave', 'dead', 'failed', 'revoked'] as const) {
      init.node.events.on(event, () => { coordinator.#scheduleReplan(LOSS_REPLAN_DELAY_MS) })
    }
    init.node.events.on('join', () => { coordinator.#scheduleFoldIn() })
    // Only a directly connected worker is planned: one that comes back through gossip first is folded in once it connects.
    init.node.membership.on('authenticated', () => { coordinator.#scheduleFoldIn() })
    init.log('info', `API listening on ${coordinator.status().apiUrl}`)
    void coordinator.#firstPlan()
    return coordinator
  }

  status (): EngineStatus {
    const layout = this.#plan?.kind === 'cluster' ? this.#plan.layout : null
    const plan = layout?.groups[0]?.plan ?? null
    const loads = new Map((this.#serving.state === 'ready' ? this.#groups.router?.loads() ?? [] : []).map(load => [load.group, load]))
    const running = new Map(this.#groups.groups.map(group => [group.key, group.id]))
    return {
      state: this.#serving.state,
      kind: this.#serving.kind ?? null,
      model: this.#init.modelPath,
      reason: this.#serving.reason === '' ? null : this.#serving.reason,
      plan,
      planTable: layout != null ? renderLayoutTable(layout) : this.#plan?.kind === 'local' ? 'all layers on this node (local engine)' : null,
      groups: layout?.groups.map(({ plan }) => {
        const id = running.get(groupKey(plan))
        const load = id !== undefined ? loads.get(id) : undefined
        return { id: id ?? null, plan, slots: load?.slots ?? 0, activeRequests: load?.active ?? 0, tokensPerSecond: load?.tokensPerSecond ?? 0 }
      }),
      unusedWorkers: layout?.unusedWorkers,
      slots: this.#serving.state === 'ready' ? this.#serving.slots : null,
      apiUrl: `${this.#init.apiTls !== undefined ? 'https' : 'http'}://${this.#init.apiHost}:${this.#init.apiPort}/v1`,
      load: this.#metrics.load()
    }
  }

  // Workers that were members before this start get a moment to reconnect, so the first plan
  // is usually the full one instead of a local plan replaced seconds later.
  async #firstPlan (): Promise<void> {
    const deadline = Date.now() + KNOWN_WORKERS_GRACE_MS
    const known = await this.#knownWorkers()
    while (!this.#stopped && Date.now() < deadline && (await this.#liveWorkers()).length < known) {
      await new Promise(resolve => setTimeout(resolve, 250))
    }
    this.#scheduleReplan(0)
  }

  // A re-plan already due sooner is kept: a join must not postpone the re-plan after a loss.
  #scheduleReplan (delayMs: number): void {
    if (this.#stopped) return
    const due = Date.now() + delayMs
    if (this.#replanTimer !== undefined && this.#replanDue <= due) return
    clearTimeout(this.#replanTimer)
    this.#replanDue = due
    this.#replanTimer = setTimeout(() => {
      this.#replanTimer = undefined
      this.#replanning = this.#replanning.then(async () => { await this.#replan('recover') })
    }, delayMs)
    // A fold-in waiting for a quiet moment goes ahead now: the engine is to be rebuilt anyway.
    this.#urgentReplan = true
    this.#quietWake.abort()
  }

  // A returning member, like the rebalance after a recovery plan, is worth a new plan but not
  // an interrupted stream: the re-plan waits, in turn after any load in progress, for a moment
  // without generations, unless it only adds groups beside those that serve.
  #scheduleFoldIn (): void {
    if (this.#stopped) return
    clearTimeout(this.#foldInTimer)
    this.#foldInTimer = setTimeout(() => {
      this.#replanning = this.#replanning.then(async () => {
        if (!await this.#onlyAddsGroups()) await this.#quietMoment()
        // A loss while waiting cut the wait short: serve again soonest, rebalance later.
        await this.#replan(this.#urgentReplan ? 'recover' : 'balance')
      })
    }, REPLAN_DELAY_MS)
  }

  async #quietMoment (): Promise<void> {
    if (this.#stopped || this.#urgentReplan) return
    this.#quietWake = new AbortController()
    await quietMoment(this.#serving, FOLD_IN_MAX_DELAY_MS, this.#quietWake.signal)
  }

  // The tunnel can fail while heartbeats still come (rpc-server hung, stream stuck): the worker
  // then counts as failed and stays out of plans for a while, or the next plan would hang alike.
  // A worker already suspect or dead is the failure detector's to judge.
  #tunnelFailed (peerId: string, err: Error): void {
    if (this.#stopped || this.#init.node.events.state(peerId) !== 'alive') return
    const holdOffMs = err instanceof RpcSessionEndedByWorkerError ? SESSION_ENDED_HOLD_OFF_MS : TUNNEL_FAILURE_HOLD_OFF_MS
    this.#init.node.events.fail(peerId, `its tunnel failed: ${err.message}`, holdOffMs)
  }

  /** What the scheduler plans from now: the live members and the coordinator's options. */
  async #planInput (): Promise<ServingPlanInput> {
    const { node } = this.#init
    return {
      choice: this.#init.engine,
      model: this.#model,
      coordinator: { id: node.libp2p.peerId.toString(), offeredBytes: node.capabilities.memoryBytes, speed: node.capabilities.computeGflops },
      workers: await this.#liveWorkers(),
      contextSize: this.#contextSize,
      parallel: this.#init.parallel ?? 1,
      privacy: this.#init.privacy,
      placement: this.#init.placement,
      replicas: this.#init.replicas,
      stages: this.#init.stages
    }
  }

  /**
   * True when the layout planned afresh keeps every running group as it is and only adds
   * groups (a lost group's worker returned, or a spare joined): adding one interrupts no
   * stream, so the fold-in need not wait for a quiet moment.
   */
  async #onlyAddsGroups (): Promise<boolean> {
    if (this.#plan?.kind !== 'cluster' || this.#serving.state !== 'ready') return false
    let next: ServingPlan
    try {
      next = chooseServingPlan(await this.#planInput())
    } catch {
      return false
    }
    if (next.kind !== 'cluster') return false
    const wanted = new Set(next.layout.groups.map(group => groupKey(group.plan)))
    const running = this.#groups.groups.map(group => group.key)
    return running.length > 0 && running.length < wanted.size && running.every(key => wanted.has(key))
  }

  // `recover` (after a loss or a crash) serves again soonest: groups that lost no worker keep
  // serving, and in a single pipeline the workers keep the layers they hold and the coordinator
  // takes over what it can; the layout planned afresh follows as a `balance` at a quiet moment,
  // like a returning member's fold-in.
  async #replan (mode: 'recover' | 'balance'): Promise<void> {
    if (this.#stopped) return
    this.#urgentReplan = false
    const { log } = this.#init
    let next: ServingPlan
    let rebalance = false
    try {
      const input = await this.#planInput()
      const held = this.#plan?.kind === 'cluster' ? this.#plan.layout : undefined
      if (mode === 'recover' && held !== undefined) {
        next = chooseServingPlan({ ...input, recoverFrom: held })
        rebalance = this.#worthRebalancing(held, next, input)
      } else {
        next = chooseServingPlan(input)
      }
    } catch (err) {
      if (mode === 'balance' && await this.#servesOnLiveWorkers()) {
        // A fresh layout that no longer fits (an override such as --replicas after a loss) never takes down groups that serve.
        log('warn', `keeping the groups that serve: the layout planned afresh does not fit the live members: ${(err as Error).message}`)
        return
      }
      log('error', `no plan fits the live members: ${(err as Error).message}`)
      this.#plan = undefined
      await this.#serving.markUnavailable((err as Error).message)
      return
    }
    if (samePlacement(this.#plan, next) && this.#serving.state === 'ready' && this.#runsEveryGroup(next)) {
      // The engine stays, but status must name the workers the plan now leaves unused.
      this.#plan = next
      return
    }
    // Given up on (crashed again and again): only a change of members is worth another try.
    if (samePlacement(this.#plan, next) && this.#serving.state === 'failed') return
    if (!samePlacement(this.#plan, next)) this.#engineRestarts.reset()
    this.#plan = next
    if (rebalance) this.#scheduleFoldIn()
    const recovering = rebalance ? ', keeping the layers the workers hold; the layout planned afresh follows at a quiet moment' : ''
    log('info', next.kind === 'local' ? 'serving with the local engine (no workers)' : `serving with ${next.layout.groups.reduce((sum, group) => sum + group.plan.stages.length - 1, 0)} worker(s)${next.layout.groups.length > 1 ? ` in ${next.layout.groups.length} replica groups` : ''}${recovering}:\n${renderLayoutTable(next.layout)}`)
    const router = this.#groups.router
    if (next.kind === 'cluster' && router !== undefined && this.#serving.serves(router) && this.#groups.sharesGroupWith(next.layout)) {
      // Groups that stay keep serving; only the others stop or start.
      await this.#changeGroups(next.layout)
      return
    }
    try {
      // A llama-server waiting on a lost worker would sit out its stop grace period; cutting its tunnels ends it at once.
      await this.#init.node.libp2p.services.rpcTunnel.closeListeners()
      await this.#serving.replace(async () => await this.#load(next), 'the engine is loading the new plan')
      log('info', `engine ready (${this.#serving.kind ?? 'none'})`)
    } catch (err) {
      const why = `the engine failed to start: ${(err as Error).message}`
      const delayMs = await this.#guard(why)
      if (delayMs !== undefined) this.#serving.loadFailed(why, delayMs)
    }
  }

  async #changeGroups (layout: ServingLayout): Promise<void> {
    try {
      await this.#groups.change(layout)
      this.#init.log('info', `engine ready (${this.#groups.groups.length} replica group(s))`)
    } catch (err) {
      this.#retryGroups(`a replica group failed to start: ${(err as Error).message}`)
    }
  }

  // A group that crashed or failed to start beside others that serve is retried after the
  // guardian's back-off (a worker at fault is left out by then), and given up on without
  // failing the groups that serve.
  #retryGroups (why: string): void {
    const decision = this.#engineRestarts.crashed(Date.now())
    if (decision.action === 'give-up') {
      this.#init.log('error', `${why}; the other replica groups keep serving; it ${decision.reason} and is not restarted until the members change`)
      return
    }
    this.#init.log('warn', `${why}; the other replica groups keep serving; restarting it in ${decision.delayMs / 1000} s`)
    this.#init.node.metrics.engineRestarted('llama-server')
    this.#scheduleReplan(decision.delayMs)
  }

  /** True when every group of `plan` runs (one that crashed beside others is started again by the next re-plan). */
  #runsEveryGroup (plan: ServingPlan): boolean {
    if (plan.kind === 'local') return true
    const running = new Set(this.#groups.groups.map(group => group.key))
    return plan.layout.groups.every(group => running.has(groupKey(group.plan)))
  }

  /** True when the engine serves replica groups whose workers are all still live. */
  async #servesOnLiveWorkers (): Promise<boolean> {
    if (this.#plan?.kind !== 'cluster' || this.#serving.state !== 'ready') return false
    const live = new Set((await this.#liveWorkers()).map(worker => worker.id))
    return this.#plan.layout.groups.every(group => group.plan.stages.slice(1).every(stage => live.has(stage.nodeId)))
  }

  // After a loss, a single pipeline is always rebalanced (its recovery plan is a stopgap). Groups
  // kept from several are a layout of their own: replacing them restarts groups that serve, so
  // only a layout predicted clearly faster is worth it (none, when an override no longer fits).
  #worthRebalancing (held: ServingLayout, next: ServingPlan, input: ServingPlanInput): boolean {
    let balanced: ServingPlan
    try {
      balanced = chooseServingPlan(input)
    } catch {
      return false
    }
    if (samePlacement(next, balanced)) return false
    if (held.groups.length === 1 || next.kind !== 'cluster' || balanced.kind !== 'cluster') return true
    const kept = layoutFromPlans(next.layout.groups.map(group => group.plan), input)
    return balanced.layout.speed > kept.speed * REGROUP_MIN_GAIN
  }

  async #load (plan: ServingPlan): Promise<Engine> {
    const { modelPath } = this.#init
    await this.#init.node.libp2p.services.rpcTunnel.closeListeners()
    if (plan.kind === 'local') return await loadLocalEngine({ modelPath, contextSize: plan.contextSize, slots: this.#init.parallel })
    return await this.#groups.load(plan.layout)
  }

  // A group's llama-server exiting on its own (llama.cpp's RPC client aborts when a worker's
  // connection breaks) stops only that group: the others keep serving, and its generations
  // continue on them (see GroupRouter). The last group's exit is the engine's: generations wait
  // for the next engine (see ServingEngine). Either way a re-plan follows, at once when a lost
  // worker explains the exit (it leaves the worker out), else after the guardian's back-off.
  async #groupExited (group: RunningGroup, exit: string): Promise<void> {
    const router = this.#groups.router
    if (this.#stopped || router === undefined || !this.#serving.serves(router)) return // replaced or stopped on purpose
    const lost = await this.#lostWorker(group.plan)
    const others = this.#groups.groups.some(running => running !== group)
    if (others) await this.#groups.stop(group)
    const why = others ? `replica group ${group.id}: ${exit}` : exit
    if (lost !== undefined) {
      // The lost worker explains the exit and the re-plan leaves it out: no back-off to wait for.
      this.#init.log('warn', `${why} after worker ${shortPeerId(lost)} was lost; re-planning without it${others ? '; the other replica groups keep serving' : ''}`)
      this.#init.node.metrics.engineRestarted('llama-server')
      this.#scheduleReplan(LOSS_REPLAN_DELAY_MS)
      if (!others) this.#serving.engineCrashed(router, why, LOSS_REPLAN_DELAY_MS)
      return
    }
    if (others) {
      this.#retryGroups(why)
      return
    }
    const delayMs = await this.#guard(why)
    if (delayMs !== undefined) this.#serving.engineCrashed(router, why, delayMs)
  }

  /** A worker of `plan` that is no longer a live worker (suspect, dead, failed or gone), if any. */
  async #lostWorker (plan: StagePlan): Promise<string | undefined> {
    const live = new Set((await this.#liveWorkers()).map(worker => worker.id))
    return plan.stages.slice(1).find(stage => !live.has(stage.nodeId))?.nodeId
  }

  // The engine's guardian, for crashes and failed starts alike: a re-plan after the back-off, or
  // after too many crashes the failed state. Returns the back-off; undefined once given up on.
  async #guard (why: string): Promise<number | undefined> {
    const decision = this.#engineRestarts.crashed(Date.now())
    if (decision.action === 'give-up') {
      const reason = `${why}; the engine ${decision.reason} and is not restarted until the members change or the node restarts`
      this.#init.log('error', reason)
      await this.#serving.markFailed(reason)
      return undefined
    }
    this.#init.log('warn', `${why}; restarting the engine in ${decision.delayMs / 1000} s`)
    this.#init.node.metrics.engineRestarted('llama-server')
    this.#scheduleReplan(decision.delayMs)
    return decision.delayMs
  }

  /** Alive workers this node is connected to (the tunnel needs a connection) that offer memory, with their offers, in PeerId order so the pipeline order is stable. */
  async #liveWorkers (): Promise<NodeOffer[]> {
    const report = await this.#init.node.status()
    return report.members
      .filter(member => member.role === 'worker' && member.state === 'alive' && member.addresses.length > 0 && (member.memoryBytes ?? 0) > 0)
      .sort((a, b) => a.peerId.localeCompare(b.peerId))
      .map(member => ({ id: member.peerId, offeredBytes: member.memoryBytes ?? 0, speed: member.computeGflops ?? 1 }))
  }

  async #knownWorkers (): Promise<number> {
    const report = await this.#init.node.status()
    return report.members.filter(member => member.role === 'worker' && member.state !== 'revoked').length
  }

  /** Drains the API (new requests get 503, those in flight finish up to the drain timeout), then stops the engine. */
  async stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#replanTimer)
    clearTimeout(this.#foldInTimer)
    this.#quietWake.abort()
    const drainTimeoutMs = this.#init.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS
    if (!await this.#api.drain(drainTimeoutMs)) this.#init.log('warn', `requests still running after the ${drainTimeoutMs} ms drain timeout were cut off`)
    await this.#replanning
    await this.#serving.dispose()
    await this.#init.node.libp2p.services.rpcTunnel.closeListeners()
    this.#init.log('info', 'engine stopped')
  }
}
