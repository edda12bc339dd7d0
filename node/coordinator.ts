import { readFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { createApiServer } from '../api/server.js'
import { startLlamaServer } from '../engine/llama-server.js'
import { loadLocalEngine } from '../engine/local-engine.js'
import { readModelFacts } from '../engine/model-facts.js'
import { defaultContextSize, inspectModelFile } from '../engine/model-file.js'
import { ServingEngine, type ServingState } from '../engine/serving-engine.js'
import { renderPlanTable, renderLlamaServerArgs, type ModelFacts, type NodeOffer, type PrivacyMode, type StagePlan, type StageRange } from '../scheduler/index.js'
import { chooseServingPlan, samePlacement, type EngineChoice, type ServingPlan } from './serving-plan.js'
import type { MeshNode } from './mesh-node.js'
import type { DataDir } from './data-dir.js'
import type { Log } from './log.js'
import type { Engine } from '../engine/engine.js'
import type { FastifyInstance } from 'fastify'

/** How long after a membership change the coordinator re-plans: joins and deaths come in bursts. */
const REPLAN_DELAY_MS = 1500

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
  apiHost: string
  apiPort: number
  log: Log
}

/** The engine part of `mesh status --json`. */
export interface EngineStatus {
  state: ServingState
  /** "local" or "llama-server" while serving */
  kind: string | null
  model: string
  /** why the engine cannot serve, when it cannot */
  reason: string | null
  plan: StagePlan | null
  planTable: string | null
  apiUrl: string
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
  #plan: ServingPlan | undefined
  #replanTimer: NodeJS.Timeout | undefined
  #replanning: Promise<void> = Promise.resolve()
  #stopped = false

  private constructor (init: CoordinatorInit, model: ModelFacts, contextSize: number, serving: ServingEngine, api: FastifyInstance) {
    this.#init = init
    this.#model = model
    this.#contextSize = contextSize
    this.#serving = serving
    this.#api = api
  }

  /** Validates the model, starts the API (503 until an engine is ready) and loads the first plan in the background. */
  static async start (init: CoordinatorInit): Promise<Coordinator> {
    const model = await readModelFacts(init.modelPath)
    const contextSize = init.contextSize ?? defaultContextSize(await inspectModelFile(init.modelPath))
    const apiKey = (await readFile(init.dir.apiKey, 'utf8')).trim()
    const serving = new ServingEngine(init.modelPath, contextSize)
    const api = await createApiServer({
      engine: serving,
      apiKey,
      modelName: basename(init.modelPath, '.gguf'),
      readiness: () => ({ ready: serving.state === 'ready', state: serving.state, reason: serving.reason })
    })
    await api.listen({ host: init.apiHost, port: init.apiPort })
    const coordinator = new Coordinator(init, model, contextSize, serving, api)
    init.node.reportEngineStatus(() => coordinator.status())
    for (const event of ['join', 'leave', 'dead', 'revoked'] as const) {
      init.node.events.on(event, () => { coordinator.#scheduleReplan() })
    }
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
      apiUrl: `http://${this.#init.apiHost}:${this.#init.apiPort}/v1`
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

  #scheduleReplan (delayMs = REPLAN_DELAY_MS): void {
    if (this.#stopped) return
    clearTimeout(this.#replanTimer)
    this.#replanTimer = setTimeout(() => {
      this.#replanning = this.#replanning.then(async () => { await this.#replan() })
    }, delayMs)
  }

  async #replan (): Promise<void> {
    if (this.#stopped) return
    const { node, log } = this.#init
    let next: ServingPlan
    try {
      next = chooseServingPlan({
        choice: this.#init.engine,
        model: this.#model,
        coordinator: { id: node.libp2p.peerId.toString(), offeredBytes: node.capabilities.memoryBytes, speed: node.capabilities.computeGflops },
        workers: await this.#liveWorkers(),
        contextSize: this.#contextSize,
        privacy: this.#init.privacy,
        stages: this.#init.stages
      })
    } catch (err) {
      log('error', `no plan fits the live members: ${(err as Error).message}`)
      this.#plan = undefined
      await this.#serving.markUnavailable((err as Error).message)
      return
    }
    if (samePlacement(this.#plan, next) && this.#serving.state === 'ready') return
    this.#plan = next
    log('info', next.kind === 'local' ? 'serving with the local engine (no workers)' : `serving with ${next.plan.stages.length - 1} worker(s):\n${renderPlanTable(next.plan)}`)
    try {
      await this.#serving.replace(async () => await this.#load(next), 'the engine is loading the new plan')
      log('info', `engine ready (${this.#serving.kind ?? 'none'})`)
    } catch (err) {
      log('error', `the engine failed to start: ${(err as Error).message}`)
    }
  }

  async #load (plan: ServingPlan): Promise<Engine> {
    const { modelPath } = this.#init
    await this.#init.node.libp2p.services.rpcTunnel.closeListeners()
    if (plan.kind === 'local') return await loadLocalEngine({ modelPath, contextSize: plan.contextSize })
    const endpoints: Record<string, string> = {}
    for (const stage of plan.plan.stages.slice(1)) {
      endpoints[stage.nodeId] = await this.#init.node.libp2p.services.rpcTunnel.openListener(peerIdFromString(stage.nodeId))
    }
    return await startLlamaServer({
      modelPath,
      contextSize: plan.plan.contextSize,
      parallel: plan.plan.parallel,
      listen: { socketPath: join(this.#init.dir.root, 'llama-server.sock') },
      extraArgs: renderLlamaServerArgs(plan.plan, endpoints)
    })
  }

  /** Alive workers with their offers, in PeerId order so the pipeline order is stable. */
  async #liveWorkers (): Promise<NodeOffer[]> {
    const report = await this.#init.node.status()
    return report.members
      .filter(member => member.role === 'worker' && member.state === 'alive' && member.memoryBytes != null)
      .sort((a, b) => a.peerId.localeCompare(b.peerId))
      .map(member => ({ id: member.peerId, offeredBytes: member.memoryBytes ?? 0, speed: member.computeGflops ?? 1 }))
  }

  async #knownWorkers (): Promise<number> {
    const report = await this.#init.node.status()
    return report.members.filter(member => member.role === 'worker' && member.state !== 'revoked').length
  }

  /** Stops the API (in-flight requests end), then the engine. */
  async stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#replanTimer)
    await this.#api.close()
    await this.#replanning
    await this.#serving.dispose()
    await this.#init.node.libp2p.services.rpcTunnel.closeListeners()
    this.#init.log('info', 'engine stopped')
  }
}
