import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { ChildProcessStartError } from './errors.js'
import { findExecutable, isExecutable } from './llama-cpp/find-executable.js'
import { childMemoryLocked, hardeningLibrary, hardeningSupported, MLOCK_ENV, MLOCK_LINE, noteMemoryLock } from './process-hardening.js'

/** How a child process ended. */
export interface ChildExit {
  /** exit code, or null when a signal ended it */
  code: number | null
  /** the signal that ended it, or null after a normal exit */
  signal: NodeJS.Signals | null
}

export interface SupervisedProcessOptions {
  /** name used in messages, e.g. "llama-server" */
  name: string
  /** executable to run */
  command: string
  args: readonly string[]
  /** environment of the child (default: this process's) */
  env?: NodeJS.ProcessEnv
  /** how many of the last output lines to keep for error messages (default 40) */
  keepLines?: number
}

export interface WaitOptions {
  /** give up after this many milliseconds */
  timeoutMs: number
  /** stop waiting when this is aborted */
  signal?: AbortSignal
}

const live = new Set<ChildProcess>()
let exitHookInstalled = false

/**
 * Kills `child` with SIGKILL if this process exits while it still runs: a child must not
 * outlive the node that started it when that node dies of an uncaught error or process.exit.
 * Returns the function to call once the child has exited.
 */
export function killOnExit (child: ChildProcess): () => void {
  live.add(child)
  if (!exitHookInstalled) {
    exitHookInstalled = true
    process.on('exit', () => {
      for (const running of live) running.kill('SIGKILL')
    })
  }
  return () => { live.delete(child) }
}

const setpriv = process.platform === 'linux' ? findExecutable('setpriv') : undefined
const envCommand = process.platform === 'linux' ? findExecutable('env') : undefined

/**
 * Spawns a child that the kernel kills when this process dies, however it dies: an exit hook
 * cannot run after SIGKILL, and an rpc-server or llama-server left behind keeps its memory and
 * port. On Linux, util-linux's setpriv sets the parent-death signal and then execs the command,
 * so the child keeps its pid; elsewhere, and for a command that cannot run (whose spawn error
 * then names it), the child is spawned plainly.
 *
 * On Linux the command also runs with core dumps off (RLIMIT_CORE 0 and not dumpable: see
 * process-hardening.ts), its memory locked in RAM after lockChildMemory() (`--mlock`). `env`
 * execs it with the library preloaded (before any the caller preloads), so that setpriv itself
 * does not load it.
 */
export function spawnTiedToParent (command: string, args: readonly string[], options: SpawnOptions): ChildProcess {
  if (!isExecutable(command)) return spawn(command, args, options)
  const tied = setpriv !== undefined ? [setpriv, '--pdeathsig', 'KILL', '--'] : []
  let hardened: string[] = []
  if (hardeningSupported && envCommand !== undefined) {
    const library = hardeningLibrary()
    const preloaded = ((options.env ?? process.env).LD_PRELOAD ?? '').split(/[: ]/).filter(path => path !== '' && path !== library)
    hardened = [envCommand, `LD_PRELOAD=${[library, ...preloaded].join(':')}`, ...(childMemoryLocked() ? [`${MLOCK_ENV}=1`] : [])]
  }
  const [first, ...rest] = [...tied, ...hardened, command, ...args]
  return spawn(first, rest, options)
}

/** Sends SIGTERM, then SIGKILL if `child` still runs after `graceMs`; resolves with how it exited. */
export async function terminate (child: ChildProcess, exited: Promise<ChildExit>, graceMs: number): Promise<ChildExit> {
  child.kill('SIGTERM')
  const timer = setTimeout(() => { child.kill('SIGKILL') }, graceMs)
  try {
    return await exited
  } finally {
    clearTimeout(timer)
  }
}

/** Describes an exit in words, e.g. "exited with code 1" or "was killed by SIGKILL". */
export function describeExit (exit: ChildExit): string {
  return exit.signal != null ? `was killed by ${exit.signal}` : `exited with code ${String(exit.code)}`
}

/**
 * A llama.cpp binary (llama-server, rpc-server) run as a child process. Its output is kept only
 * as the last few lines in memory, for error messages: it is never logged, because llama.cpp
 * can print request content at higher verbosity and prompts must never reach a log.
 */
export class SupervisedProcess {
  readonly name: string
  /** resolves once the child has exited, however that happened */
  readonly exited: Promise<ChildExit>
  readonly #child: ChildProcess
  readonly #lines: string[] = []
  readonly #keepLines: number
  readonly #events = new EventEmitter()
  #exit: ChildExit | undefined

  private constructor (options: SupervisedProcessOptions) {
    this.name = options.name
    this.#keepLines = options.keepLines ?? 40
    this.#child = spawnTiedToParent(options.command, options.args, { env: options.env, stdio: ['ignore', 'pipe', 'pipe'] })
    const forget = killOnExit(this.#child)
    for (const stream of [this.#child.stdout, this.#child.stderr]) {
      if (stream == null) continue
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', line => { this.#onLine(line) })
    }
    this.exited = new Promise(resolve => {
      const finish = (exit: ChildExit): void => {
        if (this.#exit !== undefined) return
        forget()
        this.#exit = exit
        this.#events.emit('exit', exit)
        resolve(exit)
      }
      this.#child.once('exit', (code, signal) => { finish({ code, signal }) })
      // A missing or non-executable binary never starts: report it as an exit.
      this.#child.once('error', err => {
        this.#onLine(err.message)
        finish({ code: null, signal: null })
      })
    })
  }

  /** Starts `command` as a supervised child process. */
  static spawn (options: SupervisedProcessOptions): SupervisedProcess {
    return new SupervisedProcess(options)
  }

  /** Process id of the child (undefined when it could not be started). */
  get pid (): number | undefined {
    return this.#child.pid
  }

  /** How the child ended, or undefined while it runs. */
  get exit (): ChildExit | undefined {
    return this.#exit
  }

  /** The child's last output lines (stdout and stderr interleaved), oldest first. */
  get recentOutput (): readonly string[] {
    return this.#lines
  }

  #onLine (line: string): void {
    const memoryLock = MLOCK_LINE.exec(line)
    if (memoryLock !== null) noteMemoryLock(this.name, memoryLock[1])
    this.#lines.push(line)
    if (this.#lines.length > this.#keepLines) this.#lines.shift()
    this.#events.emit('line', line)
  }

  #startError (what: string): ChildProcessStartError {
    const tail = this.#lines.length > 0 ? `; its last output: ${this.#lines.slice(-5).join(' | ')}` : ''
    return new ChildProcessStartError(`${this.name} ${what}${tail}`, [...this.#lines])
  }

  /**
   * Waits for an output line matching `pattern` and returns its match. Call it right after
   * spawn: lines printed before the call are not searched.
   */
  async waitForLine (pattern: RegExp, options: WaitOptions): Promise<RegExpExecArray> {
    const controller = new AbortController()
    const signal = AbortSignal.any([controller.signal, AbortSignal.timeout(options.timeoutMs), ...(options.signal != null ? [options.signal] : [])])
    try {
      return await new Promise<RegExpExecArray>((resolve, reject) => {
        const onLine = (line: string): void => {
          const match = pattern.exec(line)
          if (match != null) resolve(match)
        }
        const onExit = (exit: ChildExit): void => { reject(this.#startError(`${describeExit(exit)} before it was ready`)) }
        const onAbort = (): void => {
          reject(options.signal?.aborted === true ? options.signal.reason : this.#startError(`was not ready after ${options.timeoutMs / 1000} s`))
        }
        if (this.#exit !== undefined) { onExit(this.#exit); return }
        this.#events.on('line', onLine)
        this.#events.once('exit', onExit)
        signal.addEventListener('abort', onAbort, { once: true })
        controller.signal.addEventListener('abort', () => {
          this.#events.off('line', onLine)
          this.#events.off('exit', onExit)
          signal.removeEventListener('abort', onAbort)
        }, { once: true })
      })
    } finally {
      controller.abort()
    }
  }

  /** Polls `probe` until it returns true; fails if the child exits first or `timeoutMs` passes. */
  async waitUntil (probe: () => Promise<boolean>, options: WaitOptions & { intervalMs?: number }): Promise<void> {
    const deadline = Date.now() + options.timeoutMs
    for (;;) {
      if (this.#exit !== undefined) throw this.#startError(`${describeExit(this.#exit)} before it was ready`)
      options.signal?.throwIfAborted()
      if (await probe()) return
      if (Date.now() >= deadline) throw this.#startError(`was not ready after ${options.timeoutMs / 1000} s`)
      await sleep(options.intervalMs ?? 100, undefined, { signal: options.signal })
    }
  }

  /** Stops the child: SIGTERM, then SIGKILL if it is still running after `graceMs` (default 5 s). */
  async stop (graceMs = 5000): Promise<ChildExit> {
    if (this.#exit !== undefined) return this.#exit
    return await terminate(this.#child, this.exited, graceMs)
  }
}

