import { EventEmitter } from 'node:events'
import { rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { describeExit, SupervisedProcess, type ChildExit } from './child-process.js'
import { readCpuBudget } from './cpu-budget.js'
import { ChildProcessStartError } from './errors.js'
import { freePort } from './free-port.js'
import { findLlamaCppTools, llamaCppToolEnv } from './llama-cpp/tools.js'
import { RestartPolicy, type RestartPolicyOptions } from './restart-policy.js'

export interface RpcServerOptions {
  /**
   * the node's data dir. rpc-server keeps nothing there: its `--cache` saves every SET_TENSOR over
   * 10 MiB, a prompt's hidden states included, so it runs without one (the tunnel's tensor cache
   * keeps the weights). The `rpc-cache` folder that versions before kept there is removed at start.
   */
  dataDir: string
  /** ggml-rpc-server executable (default: the one `mesh setup` built) */
  rpcServerPath?: string
  /** compute threads (-t) (default: the CPU budget's) */
  threads?: number
  /** give up on a start if rpc-server does not accept connections after this many ms (default 30 s) */
  readyTimeoutMs?: number
  /** when to restart after a crash and when to give up (default: 1, 2, 4, 8 s, failed at the fifth crash in 60 s) */
  restartPolicy?: RestartPolicyOptions
}

/** Where a supervised rpc-server stands: `failed` once it crashed too often to be restarted again. */
export type RpcServerState = 'running' | 'restarting' | 'failed' | 'stopped'

export interface RpcServerEvents {
  /** rpc-server exited on its own; a restart follows */
  exit: [ChildExit]
  /** rpc-server runs again, maybe on another port */
  restart: [{ port: number, pid: number | undefined }]
  /** a restart failed; another follows after the back-off */
  'restart-failed': [Error]
  /** rpc-server crashed too often and is no longer restarted; the reason says why */
  failed: [string]
}

const HOST = '127.0.0.1'
/** where rpc-server's own cache lived in a node's data dir before it was turned off */
const LEGACY_CACHE_FOLDER = 'rpc-cache'
const START_ATTEMPTS = 3

async function accepts (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const probe = connect({ host: HOST, port })
    probe.once('connect', () => { probe.destroy(); resolve(true) })
    probe.once('error', () => { resolve(false) })
  })
}

/**
 * A supervised ggml-rpc-server: bound to 127.0.0.1 only (it has no authentication; the
 * worker bridge is its only client), on a free port, restarted with a back-off when it dies
 * (see RestartPolicy), and given up on (state `failed`) when it keeps dying.
 */
export class RpcServer extends EventEmitter<RpcServerEvents> {
  readonly #command: string
  readonly #args: (port: number) => string[]
  readonly #env: NodeJS.ProcessEnv
  readonly #readyTimeoutMs: number
  readonly #policy: RestartPolicy
  readonly #stopping = new AbortController()
  #child: SupervisedProcess | undefined
  #port: number | undefined
  #state: RpcServerState = 'running'
  #failure: string | undefined
  #restarts = 0
  #supervising: Promise<void> = Promise.resolve()

  private constructor (command: string, args: (port: number) => string[], env: NodeJS.ProcessEnv, options: RpcServerOptions) {
    super()
    this.#command = command
    this.#args = args
    this.#env = env
    this.#readyTimeoutMs = options.readyTimeoutMs ?? 30_000
    this.#policy = new RestartPolicy(options.restartPolicy)
  }

  /** Starts rpc-server and waits until it accepts connections. */
  static async start (options: RpcServerOptions): Promise<RpcServer> {
    const command = options.rpcServerPath ?? (await findLlamaCppTools()).rpcServer
    const threads = options.threads ?? (await readCpuBudget()).threads
    // It may hold prompt activations that rpc-server's cache saved: never leave them at rest.
    await rm(join(options.dataDir, LEGACY_CACHE_FOLDER), { recursive: true, force: true })
    const server = new RpcServer(command, port => ['--host', HOST, '--port', String(port), '--threads', String(threads)], llamaCppToolEnv(), options)
    await server.#spawn()
    server.#supervising = server.#supervise()
    return server
  }

  /** The port rpc-server listens on (on 127.0.0.1), undefined while it is being restarted. */
  get port (): number | undefined {
    return this.#port
  }

  /** Whether rpc-server runs, is being restarted, was given up on, or was stopped. */
  get state (): RpcServerState {
    return this.#state
  }

  /** Why rpc-server was given up on, in words (undefined unless `state` is 'failed'). */
  get failure (): string | undefined {
    return this.#failure
  }

  /** How many times rpc-server was restarted after a crash. */
  get restarts (): number {
    return this.#restarts
  }

  /** Process id of the running rpc-server. */
  get pid (): number | undefined {
    return this.#child?.pid
  }

  /** rpc-server's last output lines, for diagnosis (never logged: see SupervisedProcess). */
  get recentOutput (): readonly string[] {
    return this.#child?.recentOutput ?? []
  }

  // The port is free when chosen but may be taken before rpc-server binds it: try again.
  async #spawn (): Promise<number> {
    let lastError: Error | undefined
    for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
      const port = await freePort()
      const child = SupervisedProcess.spawn({ name: 'rpc-server', command: this.#command, args: this.#args(port), env: this.#env })
      try {
        await child.waitUntil(async () => await accepts(port), { timeoutMs: this.#readyTimeoutMs, intervalMs: 50, signal: this.#stopping.signal })
        this.#child = child
        this.#port = port
        return port
      } catch (err) {
        await child.stop()
        if (this.#stopping.signal.aborted) throw err
        lastError = err as Error
      }
    }
    throw lastError ?? new ChildProcessStartError('rpc-server did not start')
  }

  async #supervise (): Promise<void> {
    while (this.#child !== undefined && !this.#stopping.signal.aborted) {
      const exit = await this.#child.exited
      if (this.#stopping.signal.aborted) return
      this.#port = undefined
      this.emit('exit', exit)
      let last = describeExit(exit)
      for (;;) {
        const decision = this.#policy.crashed(Date.now())
        if (decision.action === 'give-up') {
          this.#state = 'failed'
          this.#failure = `rpc-server ${decision.reason} (last: it ${last}) and is not restarted again; fix the cause and restart the node`
          this.emit('failed', this.#failure)
          return
        }
        this.#state = 'restarting'
        try {
          await sleep(decision.delayMs, undefined, { signal: this.#stopping.signal })
          const port = await this.#spawn()
          this.#state = 'running'
          this.#restarts++
          this.emit('restart', { port, pid: this.pid })
          break
        } catch (err) {
          if (this.#stopping.signal.aborted) return
          last = `could not be restarted: ${(err as Error).message}`
          this.emit('restart-failed', new ChildProcessStartError(`rpc-server ${describeExit(exit)} and ${last}`))
        }
      }
    }
  }

  /** Stops rpc-server for good (SIGTERM, then SIGKILL after 5 s); no restart follows. */
  async dispose (): Promise<void> {
    this.#stopping.abort()
    this.#state = 'stopped'
    this.#port = undefined
    await this.#child?.stop()
    await this.#supervising.catch(() => {})
  }
}

/** Starts a supervised rpc-server on 127.0.0.1 and a free port, without a cache of its own. */
export async function startRpcServer (options: RpcServerOptions): Promise<RpcServer> {
  return await RpcServer.start(options)
}
