import { type ChildProcess } from 'node:child_process'
import { open, readFile } from 'node:fs/promises'
import { describeExit, killOnExit, spawnTiedToParent, terminate, type ChildExit } from '../../engine/child-process.js'
import { MESH_BIN } from '../mesh-entry.js'

export interface NodeProcessOptions {
  /** name used in messages and for the log file, e.g. "worker-1" */
  name: string
  /** the node's data dir (its LLMESH_HOME) */
  home: string
  /** file that receives the node's stdout and stderr (replaced at each start) */
  logFile: string
  /** arguments after `mesh start` */
  args: readonly string[]
  /** CPUs the node and its children may run on, a taskset list such as "1" (default: all) */
  cpus?: string
}

// The node's CPU budget then reads the pinned affinity, so its rpc-server computes with that many threads.
const TASKSET = '/usr/bin/taskset'

/** A `mesh start` child process whose output goes to a log file, never to the terminal. */
export class NodeProcess {
  readonly name: string
  readonly home: string
  readonly logFile: string
  /** resolves once the node has exited, however that happened */
  readonly exited: Promise<ChildExit>
  readonly #child: ChildProcess
  #exit: ChildExit | undefined

  private constructor (options: NodeProcessOptions, logFd: number) {
    this.name = options.name
    this.home = options.home
    this.logFile = options.logFile
    // Its own process group: Ctrl-C in the terminal reaches only `mesh up`, which then stops
    // every node itself, once, instead of each node also catching the terminal's SIGINT.
    const command = [process.execPath, MESH_BIN, 'start', ...options.args]
    const pinned = options.cpus === undefined ? command : [TASKSET, '--cpu-list', options.cpus, ...command]
    this.#child = spawnTiedToParent(pinned[0], pinned.slice(1), {
      env: { ...process.env, LLMESH_HOME: options.home },
      stdio: ['ignore', logFd, logFd],
      detached: true
    })
    // The nodes run in their own process group, so nothing else ends them if `mesh up` itself dies.
    const forget = killOnExit(this.#child)
    this.exited = new Promise(resolve => {
      const finish = (exit: ChildExit): void => {
        if (this.#exit !== undefined) return
        forget()
        this.#exit = exit
        resolve(exit)
      }
      this.#child.once('exit', (code, signal) => { finish({ code, signal }) })
      this.#child.once('error', () => { finish({ code: null, signal: null }) })
    })
  }

  /** Starts `mesh start ARGS` with LLMESH_HOME set to the node's data dir. */
  static async start (options: NodeProcessOptions): Promise<NodeProcess> {
    const log = await open(options.logFile, 'w', 0o600)
    try {
      return new NodeProcess(options, log.fd)
    } finally {
      // spawn has handed the child its own copy of the descriptor by now.
      await log.close()
    }
  }

  /** Process id of the node (undefined when it could not be started). */
  get pid (): number | undefined {
    return this.#child.pid
  }

  /** How the node ended, or undefined while it runs. */
  get exit (): ChildExit | undefined {
    return this.#exit
  }

  /** "exited with code 1" and the last lines of its log, for error messages. */
  async describeEnd (lines = 15): Promise<string> {
    const text = await readFile(this.logFile, 'utf8').catch(() => '')
    const tail = text.trimEnd().split('\n').slice(-lines).map(line => `  ${line}`).join('\n')
    const how = this.#exit === undefined ? 'is still running' : describeExit(this.#exit)
    return `${this.name} ${how}; the end of its log ${this.logFile}:\n${tail}`
  }

  /** Stops the node: SIGTERM (it shuts down cleanly), then SIGKILL after `graceMs`. */
  async stop (graceMs = 10_000): Promise<ChildExit> {
    if (this.#exit !== undefined) return this.#exit
    return await terminate(this.#child, this.exited, graceMs)
  }

  /** Ends the node at once, for a user who pressed Ctrl-C a second time. */
  kill (): void {
    if (this.#exit === undefined) this.#child.kill('SIGKILL')
  }
}
