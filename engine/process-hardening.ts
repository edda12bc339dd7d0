import { fileURLToPath } from 'node:url'
import { buildCLibrary } from './c-library.js'
import { ProcessHardeningError } from './errors.js'

/**
 * A tiny shared library that every process llmesh runs loads first: llama-server and
 * rpc-server through LD_PRELOAD, the mesh process itself as a Node addon. Its constructor turns
 * core dumps off for good (RLIMIT_CORE 0, and not dumpable, which also holds where core_pattern
 * pipes dumps to a helper that ignores RLIMIT_CORE, and keeps other users' debuggers out), so a
 * crash cannot write prompts, activations or keys to disk. With LLMESH_MLOCK=1 it also locks the
 * process's memory (weights, KV cache) in RAM, where the machine allows it, and says so on stderr.
 *
 * Neither can be set from outside: the dumpable flag is reset by execve, and Node has no prctl.
 */
const SOURCE_PATH = fileURLToPath(new URL('../../engine/process-hardening.c', import.meta.url))

/** The environment variable that asks the library to lock a process's memory. */
export const MLOCK_ENV = 'LLMESH_MLOCK'

/** What a child prints on stderr about `--mlock`: `locked`, or `not allowed: <why>`. */
export const MLOCK_LINE = /^llmesh-mlock: (locked|not allowed: .*)$/

/** `--mlock` as `mesh status` shows it. */
export interface MemoryLockStatus {
  /** whether the node was started with --mlock */
  requested: boolean
  /** `off` without --mlock; `pending` until a child (llama-server, rpc-server) has started; `locked`; or `not allowed` by the machine */
  state: 'off' | 'pending' | 'locked' | 'not allowed'
  /** for `not allowed`: which child and why, e.g. "rpc-server: RLIMIT_MEMLOCK is 8388608 bytes, ..." */
  reason: string | null
}

let lockChildren = false
/** the last outcome each child (by name) reported */
const lockOutcomes = new Map<string, string>()

/** `--mlock`: the children this process starts from now on lock their memory (weights, KV cache) in RAM. */
export function lockChildMemory (): void {
  lockChildren = true
}

/** True once lockChildMemory() was called. */
export function childMemoryLocked (): boolean {
  return lockChildren
}

/** Records what a child said about locking its memory (see MLOCK_LINE). */
export function noteMemoryLock (child: string, outcome: string): void {
  lockOutcomes.set(child, outcome)
}

/** Where `--mlock` stands for this process's children: any child the machine refused makes it `not allowed`. */
export function memoryLockStatus (): MemoryLockStatus {
  if (!lockChildren) return { requested: false, state: 'off', reason: null }
  const refused = [...lockOutcomes].filter(([, outcome]) => outcome !== 'locked')
  if (refused.length > 0) {
    return { requested: true, state: 'not allowed', reason: refused.map(([child, outcome]) => `${child}: ${outcome.replace(/^not allowed: /, '')}`).join('; ') }
  }
  return { requested: true, state: lockOutcomes.size > 0 ? 'locked' : 'pending', reason: null }
}

let library: string | undefined

/** The path of the hardening library, compiled on first use (engine/c-library.ts). Linux only. */
export function hardeningLibrary (): string {
  try {
    library ??= buildCLibrary({ sources: [SOURCE_PATH], name: 'hardening' })
  } catch (err) {
    throw new ProcessHardeningError(`the library that turns core dumps off: ${(err as Error).message}; install a C compiler (cc), which "mesh setup" needs too`)
  }
  return library
}

/** True where llmesh hardens its processes (the library uses Linux's prctl). */
export const hardeningSupported = process.platform === 'linux'

let hardened: { dumpable: number } | undefined

/**
 * Turns core dumps off for the mesh process itself, once: RLIMIT_CORE 0 and not dumpable, so a
 * crash cannot write the keys, prompts or replies it holds to disk. Returns the dumpable flag as
 * the kernel now reports it (0). Throws ProcessHardeningError where the library cannot be built.
 */
export function hardenThisProcess (): { dumpable: number } {
  if (hardened !== undefined) return hardened
  const addon = { exports: {} as { dumpable?: number } }
  process.dlopen(addon, hardeningLibrary())
  hardened = { dumpable: addon.exports.dumpable ?? -1 }
  return hardened
}
