import { EventEmitter } from 'node:events'
import { mkdir } from 'node:fs/promises'
import { connect, createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { describeExit, SupervisedProcess, type ChildExit } from './child-process.js'
import { readCpuBudget } from './cpu-budget.js'
import { ChildProcessStartError } from './errors.js'
import { findLlamaCppTools } from './llama-cpp/tools.js'

export interface RpcServerOptions {
  /** the node's data dir: rpc-server's tensor cache (`-c`) lives in its `rpc-cache` folder */
  dataDir: string
  /** ggml-rpc-server executable (default: the one `mesh setup` built) */
  rpcServerPath?: string
  /** compute threads (-t) (default: the CPU budget's) */
  threads?: number
  /** give up on a start if rpc-server does not accept connections after this many ms (default 30 s) */
  readyTimeoutMs?: number
  /** wait this long before the first restart after a crash, doubling up to `maxRestartDelayMs` (default 500 ms) */
  restartDelayMs?: number
  /** the longest wait between restarts (default 10 s) */
  maxRestartDelayMs?: number
}

export interface RpcServerEvents {
  /** rpc-server exited on its own; a restart follows */
  exit: [ChildExit]
  /** rpc-server runs again, maybe on another port */
  restart: [{ port: number, pid: number | undefined }]
  /** a restart failed; another follows after the back-off */
  'restart-failed': [Error]
}

const HOST = '127.0.0.1'
const START_ATTEMPTS = 3
// A run this long counts as healthy: the next crash restarts after the shortest delay again.
const HEALTHY_RUN_MS = 30_000

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: HOST, port: 0 }, resolve)
  })
  const { port } = server.address() as AddressInfo
  await new Promise(resolve => server.close(resolve))
  return port
}

async function accepts (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const probe = connect({ host: HOST, port })
    probe.once('connect', () => { probe.destroy(); resolve(true) })
    probe.once('error', () => { resolve(false) })
  })
}

/**
 * A supervised ggml-rpc-server: bound to 127.0.0.1 only (it has no authentication; the
 * worker bridge is its only client), on a free port, restarted with a back-off when it dies.
 */
export class RpcServer extends EventEmitter<RpcServerEvents> {
  readonly #command: string
  readonly #args: (port: number) => string[]
  readonly #env: NodeJS.ProcessEnv
  readonly #readyTimeoutMs: number
  readonly #restartDelayMs: number
  readonly #maxRestartDelayMs: number
  readonly #stopping = new AbortController()
  #child: SupervisedProcess | undefined
  #port: number | undefined
  #startedAt = 0
  #supervising: Promise<void> = Promise.resolve()

  private constructor (command: string, args: (port: number) => string[], env: NodeJS.ProcessEnv, options: RpcServerOptions) {
    super()
    this.#command = command
    this.#args = args
    this.#env = env
    this.#readyTimeoutMs = options.readyTimeoutMs ?? 30_000
    this.#restartDelayMs = options.restartDelayMs ?? 500
    this.#maxRestartDelayMs = options.maxRestartDelayMs ?? 10_000
  }

  /** Starts rpc-server and waits until it accepts connections. */
  static async start (options: RpcServerOptions): Promise<RpcServer> {
    const command = options.rpcServerPath ?? (await findLlamaCppTools()).rpcServer
    const threads = options.threads ?? (await readCpuBudget()).threads
    const cacheDir = join(options.dataDir, 'rpc-cache')
    await mkdir(cacheDir, { recursive: true, mode: 0o700 })
    // rpc-server takes its cache folder from LLAMA_CACHE (it adds "rpc/").
    const env = { ...process.env, LLAMA_CACHE: cacheDir }
    const server = new RpcServer(command, port => ['--host', HOST, '--port', String(port), '--threads', String(threads), '--cache'], env, options)
    await server.#spawn()
    server.#supervising = server.#supervise()
    return server
  }

  /** The port rpc-server listens on (on 127.0.0.1), undefined while it is being restarted. */
  get port (): number | undefined {
    return this.#port
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
        this.#startedAt = Date.now()
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
    let delay = this.#restartDelayMs
    while (this.#child !== undefined && !this.#stopping.signal.aborted) {
      const exit = await this.#child.exited
      if (this.#stopping.signal.aborted) return
      this.#port = undefined
      this.emit('exit', exit)
      if (Date.now() - this.#startedAt >= HEALTHY_RUN_MS) delay = this.#restartDelayMs
      for (;;) {
        try {
          await sleep(delay, undefined, { signal: this.#stopping.signal })
          const port = await this.#spawn()
          this.emit('restart', { port, pid: this.pid })
          break
        } catch (err) {
          if (this.#stopping.signal.aborted) return
          this.emit('restart-failed', new ChildProcessStartError(`rpc-server ${describeExit(exit)} and could not be restarted: ${(err as Error).message}`))
        } finally {
          delay = Math.min(delay * 2, this.#maxRestartDelayMs)
        }
      }
    }
  }

  /** Stops rpc-server for good (SIGTERM, then SIGKILL after 5 s); no restart follows. */
  async dispose (): Promise<void> {
    this.#stopping.abort()
    this.#port = undefined
    await this.#child?.stop()
    await this.#supervising.catch(() => {})
  }
}

/** Starts a supervised rpc-server on 127.0.0.1 and a free port, with its cache in the data dir. */
export async function startRpcServer (options: RpcServerOptions): Promise<RpcServer> {
  return await RpcServer.start(options)
}
