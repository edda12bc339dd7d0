// Shared by the fault tests: a serving cluster of real `mesh start` processes (optionally spread
// over test-made network namespaces), an API client that reaches the coordinator even inside a
// namespace, process-tree signals, and the waits the tests need.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { request } from 'node:http'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as delay } from 'node:timers/promises'
import { readModelFacts } from '../engine/model-facts.js'
import { dataDir } from '../node/data-dir.js'
import { PlanDoesNotFitError, planStages } from '../scheduler/index.js'
import { MESH_BIN } from '../tools/test-support/run-mesh.js'
import { after, before } from 'node:test'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import type { SyntheticModelOptions } from '../engine/synthetic-model/index.js'
import { meshOk, status, TestCluster, waitFor, type MeshProcess } from './mesh-harness.js'
import { descendantPids } from './process-tree.js'
import { createNamespacePair, deleteNamespacePair, type NamespacePair } from './netns.js'
import type { StatusReport } from '../node/status-report.js'
import { freePort } from '../engine/free-port.js'

const FORWARDER = fileURLToPath(new URL('./fixtures/unix-socket-forward.js', import.meta.url))

/** What a fault test across two test-made namespaces works with; the test sets `mesh` once it started the cluster. */
export class NamespacedFaultSuite {
  readonly cluster = new TestCluster()
  /** names the namespace pair and its veth devices (see setLink) */
  readonly tag: string
  /** undefined where "ip netns add" is refused (the test then skips) */
  pair: NamespacePair | undefined
  mesh: ServingCluster | undefined
  #model: TestModel | undefined

  constructor (tag: string) {
    this.tag = tag
  }

  get model (): TestModel {
    if (this.#model === undefined) throw new Error('the suite\'s model is read before its before() hook ran')
    return this.#model
  }

  /** Writes the model and creates the namespace pair. */
  async setUp (model: Partial<SyntheticModelOptions>): Promise<void> {
    this.#model = await writeTestModel(model)
    this.pair = await createNamespacePair(this.tag)
  }

  /** Closes the API client, stops every process, then deletes the namespaces (none under a live process) and the model. */
  async tearDown (): Promise<void> {
    await this.mesh?.api.close()
    await this.cluster.cleanup()
    if (this.pair !== undefined) await deleteNamespacePair(this.pair)
    await this.#model?.remove()
  }
}

/** Registers the hooks of a fault test across two namespaces: set up before its tests, torn down after them. */
export function useNamespacedFaultSuite (tagPrefix: string, model: Partial<SyntheticModelOptions>): NamespacedFaultSuite {
  const suite = new NamespacedFaultSuite(`${tagPrefix}${process.pid % 10000}`)
  before(async () => { await suite.setUp(model) })
  after(async () => { await suite.tearDown() })
  return suite
}

/** Where a node runs: its network namespace (none: this one) and the address it listens on. */
export interface Placement {
  netns?: string
  /** IPv4 address to listen on (default 127.0.0.1) */
  address?: string
}

/** What a serving cluster is made of. */
export interface ServingClusterInit {
  modelPath: string
  workers: number
  coordinator?: Placement & { port?: number, memoryBytes?: number }
  /** placement of worker n (0-based); default: the coordinator's namespace and address */
  worker?: (n: number) => Placement
  /**
   * the coordinator's serving layout options; default `--placement pipeline`: the fault tests
   * exercise one pipeline, which the automatic layout may split into replica groups
   */
  layoutArgs?: string[]
}

/** A coordinator serving a model, its workers and a client for its API. */
export interface ServingCluster {
  coordinator: MeshProcess
  workers: MeshProcess[]
  /** the arguments each worker was started with, to start it again */
  workerArgs: string[][]
  /** the coordinator's `mesh start` arguments, to start it again */
  coordinatorArgs: string[]
  workerPlacement: Placement[]
  api: ApiClient
  workerIds: string[]
}

/** Runs a one-shot `mesh` command inside `netns` (or here) and returns its stdout. */
async function meshIn (netns: string | undefined, home: string, args: string[]): Promise<string> {
  if (netns === undefined) return await meshOk(home, args)
  return await new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, MESH_BIN, ...args], { env: { ...process.env, LLMESH_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
    child.once('exit', code => {
      if (code === 0) resolve(stdout)
      else reject(new Error(`mesh ${args.join(' ')} failed (${String(code)}): ${stderr}`))
    })
  })
}

/**
 * Starts a coordinator serving `modelPath` and `workers` workers joined with invites, and waits
 * until the engine is ready on the full plan (every worker holding layers).
 */
export async function startServingCluster (cluster: TestCluster, init: ServingClusterInit): Promise<ServingCluster> {
  const placement = init.coordinator ?? {}
  const address = placement.address ?? '127.0.0.1'
  const apiPort = await freePort()
  const coordinatorHome = await cluster.home('fault-coordinator')
  await meshOk(coordinatorHome, ['init'])
  const coordinatorArgs = [
    '--role', 'coordinator', '--no-mdns', '--listen', `/ip4/${address}/tcp/${placement.port ?? 0}`,
    '--model', init.modelPath, '--api-port', String(apiPort),
    ...(placement.memoryBytes !== undefined ? ['--memory', String(placement.memoryBytes)] : []),
    ...init.layoutArgs ?? ['--placement', 'pipeline']
  ]
  const coordinator = cluster.start(coordinatorHome, coordinatorArgs, placement.netns)
  await coordinator.listenAddr()
  const workers: MeshProcess[] = []
  const workerArgs: string[][] = []
  const workerPlacement: Placement[] = []
  for (let n = 0; n < init.workers; n++) {
    const where = init.worker?.(n) ?? { netns: placement.netns, address }
    const home = await cluster.home(`fault-worker${n + 1}`)
    const invite = (await meshOk(coordinatorHome, ['token', '--role', 'worker', '--ttl', '10m'])).trim()
    await meshIn(where.netns, home, ['join', invite])
    const args = ['--role', 'worker', '--no-mdns', '--listen', `/ip4/${where.address ?? '127.0.0.1'}/tcp/0`]
    workers.push(cluster.start(home, args, where.netns))
    workerArgs.push(args)
    workerPlacement.push(where)
  }
  const workerIds = await Promise.all(workers.map(async w => await waitFor('the worker\'s control socket', async () => (await status(w.home)).self.peerId, 90_000)
    .catch((err: Error) => { throw new Error(`${err.message}\nthe worker's log:\n${w.lines.join('\n')}`) })))
  const apiKey = (await readFile(dataDir(coordinatorHome).apiKey, 'utf8')).trim()
  const api = await ApiClient.open(cluster, apiKey, apiPort, placement.netns)
  try {
    await waitForPlan(coordinator.home, workerIds, 180_000)
  } catch (err) {
    await api.close()
    throw new Error(`${(err as Error).message}\nthe coordinator's log ends:\n${coordinator.lines.slice(-40).join('\n')}`)
  }
  return { coordinator, workers, workerArgs, coordinatorArgs, workerPlacement, api, workerIds }
}

/**
 * Waits until the coordinator serves from a ready engine planned on exactly `workerIds` (as
 * stages of its replica groups, or as workers the scheduler left without layers: speeds
 * measured on one busy machine vary); returns the status.
 */
export async function waitForPlan (coordinatorHome: string, workerIds: readonly string[], timeoutMs = 60_000): Promise<StatusReport> {
  const wanted = [...workerIds].sort().join(',')
  let last: StatusReport | undefined
  return await waitFor(`a ready engine planned on ${workerIds.length} worker(s)`, async () => {
    const report = last = await status(coordinatorHome)
    const engine = report.engine
    if (engine?.state !== 'ready') return undefined
    const planned = [...(engine.groups ?? []).flatMap(group => group.plan.stages.slice(1).map(s => s.nodeId)), ...engine.unusedWorkers ?? []].sort().join(',')
    return planned === wanted ? report : undefined
  }, timeoutMs).catch((err: Error) => {
    const members = last?.members.map(m => `${m.peerId.slice(-6)} ${m.role} ${m.state}`).join(', ')
    throw new Error(`${err.message}; last seen: engine ${last?.engine?.state ?? 'none'} (${last?.engine?.reason ?? ''}), plan ${last?.engine?.planTable ?? 'none'}, members ${members ?? 'none'}`)
  })
}

/** Waits for the coordinator's status to satisfy `check`; returns the status. */
export async function waitForStatus (coordinatorHome: string, what: string, check: (report: StatusReport) => boolean, timeoutMs = 60_000): Promise<StatusReport> {
  let last: StatusReport | undefined
  return await waitFor(what, async () => {
    last = await status(coordinatorHome)
    return check(last) ? last : undefined
  }, timeoutMs).catch((err: Error) => { throw new Error(`${err.message}; the engine's last status: ${JSON.stringify(last?.engine)}`) })
}

/** Sends `signal` to a node and every process below it (its rpc-server, llama-server). */
export async function signalTree (node: MeshProcess, signal: NodeJS.Signals): Promise<void> {
  const pid = node.pid
  if (pid === undefined) throw new Error('the node has no process id')
  for (const target of [pid, ...await descendantPids(pid)]) {
    try { process.kill(target, signal) } catch { /* already gone */ }
  }
}

/** Resolves with the time of the first log line after line `from` that matches `pattern`. */
export async function lineAfter (node: MeshProcess, from: number, pattern: RegExp, timeoutMs = 20_000): Promise<number> {
  const deadline = Date.now() + timeoutMs
  let checked = from
  while (Date.now() < deadline) {
    for (; checked < node.lines.length; checked++) {
      if (pattern.test(node.lines[checked])) return Date.now()
    }
    await delay(25)
  }
  throw new Error(`no log line matching ${String(pattern)} within ${timeoutMs} ms; log:\n${node.lines.slice(from).join('\n')}`)
}

/** The coordinator's log line that declares `peerId` dead (by silence or by a failed tunnel). */
export function deathLine (peerId: string): RegExp {
  const short = `${peerId.slice(0, 8)}…${peerId.slice(-6)}`
  return new RegExp(`member ${short.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} declared dead`)
}

/** One answer of the API: status, headers and the whole body. */
export interface ApiAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** The coordinator's OpenAI API, over TCP, or through a UNIX-socket forwarder into its namespace. */
export class ApiClient {
  readonly apiKey: string
  readonly #target: { host: string, port: number } | { socketPath: string }
  readonly #forwarder: ChildProcess | undefined

  private constructor (apiKey: string, target: { host: string, port: number } | { socketPath: string }, forwarder?: ChildProcess) {
    this.apiKey = apiKey
    this.#target = target
    this.#forwarder = forwarder
  }

  /** A client for the API on 127.0.0.1:`port` of `netns` (or of this namespace). */
  static async open (cluster: TestCluster, apiKey: string, port: number, netns?: string): Promise<ApiClient> {
    if (netns === undefined) return new ApiClient(apiKey, { host: '127.0.0.1', port })
    const socketPath = join(await cluster.home('api-forward'), 'api.sock')
    const forwarder = spawn('ip', ['netns', 'exec', netns, process.execPath, FORWARDER, socketPath, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] })
    const client = new ApiClient(apiKey, { socketPath }, forwarder)
    await new Promise<void>((resolve, reject) => {
      forwarder.stdout?.once('data', () => { resolve() })
      forwarder.once('exit', code => { reject(new Error(`the API forwarder exited with code ${String(code)}`)) })
    })
    return client
  }

  /** The API's base URL (http://127.0.0.1:PORT) for a client of the test's own; undefined behind a namespace's forwarder. */
  get baseUrl (): string | undefined {
    return 'port' in this.#target ? `http://${this.#target.host}:${this.#target.port}` : undefined
  }

  /** Stops the forwarder, if there is one. */
  async close (): Promise<void> {
    const child = this.#forwarder
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise(resolve => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
  }

  /** POSTs `body` as JSON to `path`; rejects when no complete answer came within `timeoutMs`. */
  async post (path: string, body: object, timeoutMs: number): Promise<ApiAnswer> {
    const payload = JSON.stringify(body)
    return await new Promise((resolve, reject) => {
      const req = request({
        ...this.#target,
        path,
        method: 'POST',
        headers: { authorization: `Bearer ${this.apiKey}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        signal: AbortSignal.timeout(timeoutMs)
      }, res => {
        let text = ''
        res.setEncoding('utf8').on('data', (chunk: string) => { text += chunk })
        res.once('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }) })
        res.once('error', reject)
      })
      req.once('error', reject)
      req.end(payload)
    })
  }

  /** A greedy text completion; returns the answer and, for a 200, its text. */
  async complete (prompt: string, maxTokens: number, timeoutMs = 60_000): Promise<ApiAnswer & { text?: string }> {
    const answer = await this.post('/v1/completions', { model: 'model', prompt, max_tokens: maxTokens, temperature: 0 }, timeoutMs)
    if (answer.status !== 200) return answer
    return { ...answer, text: (JSON.parse(answer.body) as { choices: Array<{ text: string }> }).choices[0].text }
  }
}

/**
 * Takes the veth link of `pair`'s second namespace down or up: the cable pulled and plugged
 * back. Device names follow createNamespacePair: `<tag>a` in the first namespace, `<tag>b` in the second.
 */
export async function setLink (pair: NamespacePair, tag: string, state: 'up' | 'down'): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    execFile('ip', ['-n', pair.names[1], 'link', 'set', `${tag}b`, state], err => {
      if (err == null) resolve()
      else reject(err)
    })
  })
}

/**
 * Memory for a coordinator that cannot serve `modelPath` alone but can with one worker that
 * offers plenty: the scheduler's own sums, so the test follows its rules.
 */
export async function memoryTooSmallAlone (modelPath: string, contextSize: number): Promise<number> {
  const model = await readModelFacts(modelPath)
  const plan = (coordinatorBytes: number, workers: number): boolean => {
    try {
      planStages({ model, contextSize, privacy: 'on', coordinator: { id: 'c', offeredBytes: coordinatorBytes, speed: 1 }, workers: Array.from({ length: workers }, (_, n) => ({ id: `w${n}`, offeredBytes: 1024 ** 3, speed: 1 })) })
      return true
    } catch (err) {
      if (err instanceof PlanDoesNotFitError) return false
      throw err
    }
  }
  const alone = planStages({ model, contextSize, privacy: 'on', coordinator: { id: 'c', offeredBytes: 1024 ** 3, speed: 1 }, workers: [] }).stages[0].memory.totalBytes
  for (let fraction = 0.95; fraction > 0.3; fraction -= 0.05) {
    const bytes = Math.floor(alone * fraction)
    if (!plan(bytes, 0) && plan(bytes, 1)) return bytes
  }
  throw new Error(`no coordinator memory makes ${modelPath} need a worker`)
}
