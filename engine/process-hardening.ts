import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ProcessHardeningError } from './errors.js'
import { llmeshCacheDir } from './llama-cpp/cache.js'

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
const SOURCE = String.raw`
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>

/* CAP_IPC_LOCK lets a process lock memory whatever its RLIMIT_MEMLOCK. */
static int may_lock_beyond_limit(void) {
  FILE *status = fopen("/proc/self/status", "r");
  char line[256];
  unsigned long long caps = 0;
  int found = 0;
  if (status == NULL) return 0;
  while (!found && fgets(line, sizeof line, status) != NULL) found = sscanf(line, "CapEff: %llx", &caps) == 1;
  fclose(status);
  return found && ((caps >> 14) & 1);
}

static void lock_memory(void) {
  struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
  struct rlimit limit;
  if (setrlimit(RLIMIT_MEMLOCK, &unlimited) != 0 && !may_lock_beyond_limit() && getrlimit(RLIMIT_MEMLOCK, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    /* MCL_FUTURE under a finite limit makes later allocations fail: lock nothing rather than crash. */
    fprintf(stderr, "llmesh-mlock: not allowed: RLIMIT_MEMLOCK is %llu bytes, and this process may neither raise it nor lock beyond it (CAP_IPC_LOCK)\n", (unsigned long long) limit.rlim_cur);
    return;
  }
  if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
    fprintf(stderr, "llmesh-mlock: not allowed: mlockall failed: %s\n", strerror(errno));
    return;
  }
  fprintf(stderr, "llmesh-mlock: locked\n");
}

__attribute__((constructor)) static void llmesh_harden(void) {
  struct rlimit none = { 0, 0 };
  setrlimit(RLIMIT_CORE, &none);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  const char *lock = getenv("LLMESH_MLOCK");
  if (lock != NULL && strcmp(lock, "1") == 0) lock_memory();
}

/* Node addon entry (only the mesh process loads it so): exports the dumpable flag as read back. */
typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
extern int napi_create_int32(napi_env env, int value, napi_value *result) __attribute__((weak));
extern int napi_set_named_property(napi_env env, napi_value object, const char *name, napi_value value) __attribute__((weak));

__attribute__((visibility("default"))) napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  napi_value dumpable;
  if (napi_create_int32 != NULL && napi_set_named_property != NULL && napi_create_int32(env, prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), &dumpable) == 0) {
    napi_set_named_property(env, exports, "dumpable", dumpable);
  }
  return exports;
}
`

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

/**
 * The path of the hardening library, compiled with the system's C compiler (`cc`, which
 * `mesh setup` needs anyway) on first use and cached by the hash of its source. Linux only.
 */
export function hardeningLibrary (): string {
  if (library !== undefined) return library
  const dir = join(llmeshCacheDir(), 'hardening')
  const path = join(dir, `llmesh-hardening-${createHash('sha256').update(SOURCE).digest('hex').slice(0, 12)}.so`)
  if (!existsSync(path)) {
    mkdirSync(dir, { recursive: true, mode: 0o755 })
    // Built under a name of its own and renamed into place: several processes may build it at once.
    const partial = `${path}.${process.pid}.partial`
    const source = `${partial}.c`
    try {
      writeFileSync(source, SOURCE)
      execFileSync('cc', ['-shared', '-fPIC', '-O2', '-o', partial, source], { stdio: ['ignore', 'ignore', 'pipe'] })
      renameSync(partial, path)
    } catch (err) {
      const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim()
      throw new ProcessHardeningError(`cannot build the library that turns core dumps off (${path}): ${stderr !== undefined && stderr !== '' ? stderr : (err as Error).message}; install a C compiler (cc), which "mesh setup" needs too`)
    } finally {
      rmSync(source, { force: true })
      rmSync(partial, { force: true })
    }
  }
  library = path
  return path
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
