import { mkdir } from 'node:fs/promises'
import { freemem } from 'node:os'
import { join } from 'node:path'
import { controlRequest } from '../../node/control-socket.js'
import { createCluster } from '../../node/create-cluster.js'
import { dataDir, exists, readClusterConfig, writeClusterConfig, type DataDir } from '../../node/data-dir.js'
import { joinCluster } from '../../node/join-cluster.js'
import { requestStatus } from '../../node/status-request.js'
import { waitFor } from '../wait-for.js'
import { NodeStartError } from './errors.js'
import { NodeProcess } from './node-process.js'

/** Where `mesh up` keeps its nodes under LLMESH_HOME. */
export interface UpLayout {
  coordinator: string
  /** data dir of worker `n` (1-based) */
  worker: (n: number) => string
  logs: string
}

/** The data dirs and log folder of `mesh up` under `home` (LLMESH_HOME). */
export function upLayout (home: string): UpLayout {
  const root = join(home, 'up')
  return { coordinator: join(root, 'coordinator'), worker: n => join(root, `worker-${n}`), logs: join(root, 'logs') }
}

export interface LocalClusterOptions {
  layout: UpLayout
  workers: number
  /** arguments of the coordinator's `mesh start` besides role, listen and mdns */
  coordinatorArgs: readonly string[]
  /** CPUs worker n (1-based) and its rpc-server run on, a taskset list (default: all) */
  workerCpus?: (n: number) => string
  /** arguments of every node's `mesh start`, the coordinator's and the workers' (e.g. `--mlock`) */
  nodeArgs?: readonly string[]
  /** told each step, for the user to read */
  progress: (line: string) => void
  /** aborting it abandons the start-up (the caller then calls stop()) */
  signal: AbortSignal
  /** how long the coordinator may take to stop, its API drain included, before it is killed (default 10 s) */
  coordinatorStopGraceMs?: number
}

// Every node listens on loopback only, on a port the OS picks, and finds its peers by address.
const NODE_ARGS = ['--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns']
const COORDINATOR_START_MS = 60_000
const WORKERS_ALIVE_MS = 60_000
const INVITE_TTL_MS = 10 * 60_000

/**
 * A coordinator and its workers as `mesh start` child processes on this machine, with data
 * dirs that are created on the first start (init, one invite and join per worker) and reused
 * afterwards.
 */
export class LocalCluster {
  readonly nodes: NodeProcess[] = []
  readonly #options: LocalClusterOptions
  // Aborted when a node exits during start-up, so that every wait ends at once.
  readonly #startup = new AbortController()
  readonly #signal: AbortSignal
  #started = false
  #stopping = false

  constructor (options: LocalClusterOptions) {
    this.#options = options
    this.#signal = AbortSignal.any([options.signal, this.#startup.signal])
  }

  /** The coordinator's data dir. */
  get coordinatorDir (): DataDir {
    return dataDir(this.#options.layout.coordinator)
  }

  /**
   * Starts the coordinator, then the workers; once all workers are alive members, waits for
   * `whenReady` (e.g. the API answering) and returns what it returns. A node that exits before
   * then aborts the signal given to `whenReady` and makes start fail with its last log lines.
   */
  async start<T> (whenReady: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const { layout, workers, progress } = this.#options
    await mkdir(layout.logs, { recursive: true, mode: 0o700 })
    progress(`node logs: ${layout.logs}`)
    const coordinator = this.coordinatorDir
    if (!(await exists(coordinator.config))) {
      const created = await createCluster(coordinator, false)
      progress(`created cluster ${created.clusterId} in ${coordinator.root}`)
    }
    // All nodes share this machine's memory: each offers its part, so that no plan counts it twice.
    const memory = ['--memory', String(Math.floor(freemem() / (workers + 1)))]
    await this.#startNode('coordinator', coordinator.root, ['--role', 'coordinator', ...NODE_ARGS, ...memory, ...this.#options.nodeArgs ?? [], ...this.#options.coordinatorArgs])
    const self = await waitFor('the coordinator to answer on its control socket', async () => (await requestStatus(coordinator)).self, COORDINATOR_START_MS, this.#signal)
    for (let n = 1; n <= workers; n++) {
      this.#signal.throwIfAborted()
      const worker = dataDir(layout.worker(n))
      await this.#prepareWorker(worker, n, self.clusterId, self.addresses)
      await this.#startNode(`worker-${n}`, worker.root, ['--role', 'worker', ...NODE_ARGS, ...memory, ...this.#options.nodeArgs ?? []], this.#options.workerCpus?.(n))
    }
    await waitFor(`${workers} workers to become alive members`, async () => {
      const report = await requestStatus(coordinator)
      return report.members.filter(m => m.role === 'worker' && m.state === 'alive').length >= workers ? true : undefined
    }, WORKERS_ALIVE_MS, this.#signal)
    const result = await whenReady(this.#signal)
    this.#signal.throwIfAborted()
    this.#started = true
    return result
  }

  /** Resolves with the coordinator once it exits: it is the one node the API cannot do without. */
  async coordinatorExit (): Promise<NodeProcess> {
    const coordinator = this.nodes[0]
    await coordinator.exited
    return coordinator
  }

  /**
   * Stops every node: the coordinator first, so that the requests its API drains still have
   * their workers, then the workers (which see their coordinator leave, and stop anyway).
   */
  async stop (): Promise<void> {
    this.#stopping = true
    await this.nodes[0]?.stop(this.#options.coordinatorStopGraceMs)
    await Promise.all(this.nodes.slice(1).map(async node => node.stop()))
  }

  /** Ends every node at once. */
  kill (): void {
    for (const node of this.nodes) node.kill()
  }

  async #startNode (name: string, home: string, args: string[], cpus?: string): Promise<void> {
    const node = await NodeProcess.start({ name, home, logFile: join(this.#options.layout.logs, `${name}.log`), args, cpus })
    this.nodes.push(node)
    this.#options.progress(`started ${name} (pid ${node.pid ?? '?'}, log ${node.logFile})`)
    void node.exited.then(async () => {
      if (this.#stopping) return
      const end = await node.describeEnd()
      if (!this.#started) this.#startup.abort(new NodeStartError(`${end}\nmesh up stopped the other nodes; fix the problem above and run it again`))
      // The coordinator re-plans without a lost worker, so serving goes on; the user should know.
      else if (node !== this.nodes[0]) this.#options.progress(`warning: ${end}`)
    })
  }

  // A worker joins once with an invite; afterwards it only learns where the coordinator
  // listens now, since its port changes at every start.
  async #prepareWorker (worker: DataDir, n: number, clusterId: string, coordinatorAddrs: string[]): Promise<void> {
    const config = await exists(worker.config) ? await readClusterConfig(worker) : undefined
    if (config?.clusterId === clusterId) {
      await writeClusterConfig(worker, { ...config, coordinatorAddrs })
      return
    }
    const coordinator = this.coordinatorDir
    const { invite } = await controlRequest(coordinator.controlSocket, coordinator.root, { op: 'token', role: 'worker', ttlMs: INVITE_TTL_MS }) as { invite: string }
    // A worker dir left from an earlier cluster (the coordinator's dir was removed) joins the new one.
    const joined = await joinCluster(worker, invite, config !== undefined)
    this.#options.progress(`worker-${n} joined cluster ${joined.clusterId} as ${joined.peerId}`)
  }
}
