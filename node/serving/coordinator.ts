import { readFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { createApiServer, type ApiServerOptions } from '../../api/server.js'
import { ApiMetrics } from '../../api/metrics.js'
import { ObservedEngine } from '../../engine/observed-engine.js'
import { WorkerTokenTimes } from './worker-token-time.js'
import { describeExit } from '../../engine/child-process.js'
import { startLlamaServer, type LlamaServer } from '../../engine/llama-server.js'
import { loadLocalEngine } from '../../engine/local-engine.js'
import { readModelFacts } from '../../engine/model-facts.js'
import { defaultContextSize, inspectModelFile } from '../../engine/model-file.js'
import { RestartPolicy } from '../../engine/restart-policy.js'
import { ServingEngine } from '../../engine/serving-engine.js'
import { messageCapFor, RpcSessionEndedByWorkerError } from '../../protocols/rpc-tunnel/index.js'
import { checkSlots, largestStageTensorBytes, renderPlanTable, renderLlamaServerArgs, type ModelFacts, type NodeOffer, type PrivacyMode, type StageRange } from '../../scheduler/index.js'
import { quietMoment } from './quiet-moment.js'
import { shortPeerId } from '../short-peer-id.js'
import { chooseServingPlan, samePlacement, type EngineChoice, type ServingPlan } from './serving-plan.js'
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
  /** total context of the engine, in tokens (default: the model's, at most 4096) */
  contextSize?: number
  /**
   * requests the engine generates at once: llama-server's parallel slots or the local engine's
   * sequences, which share the context evenly (default 1)
   */
  parallel?: number
  apiHost: string
  apiPort: number
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
    const plan = this.#plan?.kind === 'cluster' ? this.#plan.plan : null
    return {
      state: this.#serving.state,
      kind: this.#serving.kind ?? null,
      model: this.#init.modelPath,
      reason: this.#serving.reason === '' ? null : this.#serving.reason,
      plan,
      planTable: plan != null ? renderPlanTable(plan) : this.#plan?.kind === 'local' ? 'all layers on this node (local engine)' : null,
      slots: this.#serving.state === 'ready' ? this.#serving.slots : null,
      apiUrl: `http://${this.#init.apiHost}:${this.#init.apiPort}/v1`,
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
  // without generations.
  #scheduleFoldIn (): void {
    if (this.#stopped) return
    clearTimeout(this.#foldInTimer)
    this.#foldInTimer = setTimeout(() => {
      this.#replanning = this.#replanning.then(async () => {
        await this.#quietMoment()
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

  // `recover` (after a loss or a crash) serves again soonest: the workers keep the layers they
  // hold and the coordinator takes over what it can; the speed-proportional plan follows as a
  // `balance` at a quiet moment, like a returning member's fold-in.
  async #replan (mode: 'recover' | 'balance'): Promise<void> {
    if (this.#stopped) return
    this.#urgentReplan = false
    const { node, log } = this.#init
    let next: ServingPlan
    let rebalance: boolean
    try {
      const input = {
        choice: this.#init.engine,
        model: this.#model,
        coordinator: { id: node.libp2p.peerId.toString(), offeredBytes: node.capabilities.memoryBytes, speed: node.capabilities.computeGflops },
        workers: await this.#liveWorkers(),
        contextSize: this.#contextSize,
        parallel: this.#init.parallel ?? 1,
        privacy: this.#init.privacy,
        stages: this.#init.stages
      }
      const balanced = chooseServingPlan(input)
      const held = this.#plan?.kind === 'cluster' ? this.#plan.plan : undefined
      next = mode === 'recover' && held !== undefined ? chooseServingPlan({ ...input, recoverFrom: held }) : balanced
      rebalance = !samePlacement(next, balanced)
    } catch (err) {
      log('error', `no plan fits the live members: ${(err as Error).message}`)
      this.#plan = undefined
      await this.#serving.markUnavailable((err as Error).message)
      return
    }
    if (samePlacement(this.#plan, next) && this.#serving.state === 'ready') {
      // The engine stays, but status must name the workers the plan now leaves unused.
      this.#plan = next
      return
    }
    // Given up on (crashed again and again): only a change of members is worth another try.
    if (samePlacement(this.#plan, next) && this.#serving.state === 'failed') return
    if (!samePlacement(this.#plan, next)) this.#engineRestarts.reset()
    this.#plan = next
    if (rebalance) this.#scheduleFoldIn()
    const recovering = rebalance ? ', keeping the layers the workers hold; the speed-proportional plan follows at a quiet moment' : ''
    log('info', next.kind === 'local' ? 'serving with the local engine (no workers)' : `serving with ${next.plan.stages.length - 1} worker(s)${recovering}:\n${renderPlanTable(next.plan)}`)
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

  async #load (plan: ServingPlan): Promise<Engine> {
    const { modelPath } = this.#init
    await this.#init.node.libp2p.services.rpcTunnel.closeListeners()
    if (plan.kind === 'local') return await loadLocalEngine({ modelPath, contextSize: plan.contextSize, slots: this.#init.parallel })
    const endpoints: Record<string, string> = {}
    for (const stage of plan.plan.stages.slice(1)) {
      endpoints[stage.nodeId] = await this.#init.node.libp2p.services.rpcTunnel.openListener(peerIdFromString(stage.nodeId), {
        onFailure: err => { this.#tunnelFailed(stage.nodeId, err) },
        traffic: () => this.#tokenTimes.session(stage.nodeId),
        // The worker refuses any request larger than its stage of this plan can carry.
        maxMessageBytes: messageCapFor(largestStageTensorBytes(this.#model, plan.plan, stage))
      }).catch((err: Error) => {
        // A worker that cannot be told its cap cannot serve this plan either: the next plan leaves it out.
        this.#tunnelFailed(stage.nodeId, err)
        throw err
      })
    }
    const server = await startLlamaServer({
      modelPath,
      contextSize: plan.plan.contextSize,
      parallel: plan.plan.parallel,
      listen: { socketPath: join(this.#init.dir.root, 'llama-server.sock') },
      extraArgs: renderLlamaServerArgs(plan.plan, endpoints)
    })
    void server.exited.then(exit => { void this.#engineExited(server, `llama-server ${describeExit(exit)}`) })
    return server
  }

  // llama-server exiting on its own (llama.cpp's RPC client aborts when a worker's connection
  // breaks) is restarted by a re-plan after a back-off, which also drops a worker found dead by
  // then. Generations in progress wait for the next engine (see ServingEngine).
  async #engineExited (server: LlamaServer, why: string): Promise<void> {
    if (this.#stopped || !this.#serving.serves(server)) return // replaced or stopped on purpose
    const lost = await this.#lostPlannedWorker()
    if (lost !== undefined) {
      // The lost worker explains the exit and the re-plan leaves it out: no back-off to wait for.
      this.#init.log('warn', `${why} after worker ${shortPeerId(lost)} was lost; re-planning without it`)
      this.#init.node.metrics.engineRestarted('llama-server')
      this.#scheduleReplan(LOSS_REPLAN_DELAY_MS)
      this.#serving.engineCrashed(server, why, LOSS_REPLAN_DELAY_MS)
      return
    }
    const delayMs = await this.#guard(why)
    if (delayMs !== undefined) this.#serving.engineCrashed(server, why, delayMs)
  }

  /** A worker of the current plan that is no longer a live worker (suspect, dead, failed or gone), if any. */
  async #lostPlannedWorker (): Promise<string | undefined> {
    if (this.#plan?.kind !== 'cluster') return undefined
    const live = new Set((await this.#liveWorkers()).map(worker => worker.id))
    return this.#plan.plan.stages.slice(1).find(stage => !live.has(stage.nodeId))?.nodeId
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
