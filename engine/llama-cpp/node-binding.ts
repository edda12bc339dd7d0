import { createWriteStream } from 'node:fs'
import { access, lstat, mkdir, readdir, readlink, rename, rm, symlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { getLlama, LlamaLogLevel, type LlamaOptions } from 'node-llama-cpp'
import { parseBuildProgress, runStep, type BuildProgress } from './build-step.js'
import { llmeshCacheDir } from './cache.js'
import { lockCacheEntry } from './cache-lock.js'
import { bundledLlamaCppSource } from './source.js'

/**
 * Why the local engine needs its own build: node-llama-cpp's prebuilt CPU binaries are compiled
 * without OpenMP, so ggml's worker threads wait for each other in a pure spin loop
 * (ggml_barrier, hundreds of times per token). When one of them is preempted, by Node's own
 * thread or anything else on a small machine, its partner burns its whole time slice spinning.
 * A build with OpenMP waits in libgomp, which spins briefly and then sleeps, like llama-server.
 */

/** Which node-llama-cpp binary the local engine loads: the one `mesh setup` built, or the prebuilt fallback. */
export type NodeBindingKind = 'localBuild' | 'prebuilt'

/** The options every llmesh caller of getLlama shares, so that they find the same build. */
export const NODE_LLAMA_OPTIONS = { gpu: false, logLevel: LlamaLogLevel.error } as const satisfies LlamaOptions

export interface EnsureNodeBindingOptions {
  /** build even when a native build exists */
  rebuild?: boolean
  /** stops the build (node-llama-cpp starts the next one afresh) */
  signal?: AbortSignal
  /** where the build stands: waiting for another setup's, configuring, compiling (with the steps done) */
  onProgress?: (progress: BuildProgress) => void
}

export interface NodeBindingResult {
  /** true when this call compiled the binding, false when a native build was already there */
  built: boolean
  seconds: number
  /** the build's full output (set when it was built) */
  logPath?: string
}

/** The script that compiles the binding in a process of its own (see compileInChild). */
const COMPILE_SCRIPT = fileURLToPath(new URL('./compile-node-binding.js', import.meta.url))

/** Reports whether node-llama-cpp has a native build from `mesh setup`, without building anything. */
export async function hasNativeNodeBinding (): Promise<boolean> {
  try {
    const llama = await getLlama({ ...NODE_LLAMA_OPTIONS, build: 'never', usePrebuiltBinaries: false })
    const kind: NodeBindingKind = llama.buildType
    await llama.dispose()
    return kind === 'localBuild'
  } catch {
    return false
  }
}

/**
 * Node.js headers for cmake-js: a Node.js installed with its headers (as distribution packages
 * do, /usr/include/node) needs no download, and nothing but the npm registry may be reachable.
 */
async function useInstalledNodeHeaders (): Promise<void> {
  if (process.env.npm_config_nodedir != null) return
  const prefix = dirname(dirname(process.execPath))
  try {
    await access(join(prefix, 'include', 'node', 'node.h'))
    process.env.npm_config_nodedir = prefix
  } catch {
    // no local headers: cmake-js downloads them
  }
}

/** Where the native builds live: in the cache, so that a fresh install does not lose them. */
function cachedLocalBuildsDir (): string {
  return join(llmeshCacheDir(), 'node-llama-cpp', bundledLlamaCppSource().nodeLlamaCpp.version, 'localBuilds')
}

/**
 * Points node-llama-cpp's build folder (`llama/localBuilds` inside its package, the only place
 * getLlama looks) at the cache with a symbolic link. Builds already in the package folder are
 * moved into the cache first.
 */
async function linkLocalBuildsToCache (): Promise<void> {
  const target = cachedLocalBuildsDir()
  const link = join(bundledLlamaCppSource().nodeLlamaCpp.dir, 'llama', 'localBuilds')
  await mkdir(target, { recursive: true })
  const existing = await lstat(link).catch(() => undefined)
  if (existing?.isSymbolicLink() === true && await readlink(link) === target) return
  if (existing?.isDirectory() === true) {
    for (const entry of await readdir(link)) {
      await rename(join(link, entry), join(target, entry)).catch(async () => { await rm(join(link, entry), { recursive: true, force: true }) })
    }
  }
  await rm(link, { recursive: true, force: true })
  await symlink(target, link, 'dir')
}

/**
 * Makes sure node-llama-cpp loads a native binding compiled from the llama.cpp source it
 * bundles (the same tag llama-server is built from), for this CPU and with OpenMP. A binding
 * that already loads is kept as it is; otherwise the package's build folder is linked into the
 * cache (see linkLocalBuildsToCache), where a fresh install finds the earlier build, and only
 * when the cache has none either is it compiled, under a lock shared by concurrent setups.
 */
export async function ensureNodeBinding (options: EnsureNodeBindingOptions = {}): Promise<NodeBindingResult> {
  const started = performance.now()
  if (options.rebuild !== true && await hasNativeNodeBinding()) return { built: false, seconds: 0 }
  await linkLocalBuildsToCache()
  if (options.rebuild !== true && await hasNativeNodeBinding()) return { built: false, seconds: 0 }
  const release = await lockCacheEntry(cachedLocalBuildsDir(), () => options.onProgress?.({ phase: 'waiting' }))
  let logPath: string
  try {
    if (options.rebuild !== true && await hasNativeNodeBinding()) return { built: false, seconds: 0 }
    logPath = await compileInChild(options)
  } finally {
    await release()
  }
  return { built: true, seconds: (performance.now() - started) / 1000, logPath }
}

/**
 * Compiles the binding in a child process: node-llama-cpp writes the build's output to the
 * stdout of the process that builds, and this one reads it line by line, for the log file and
 * for the same progress (ninja's or make's steps) as the llama.cpp tools' build. OpenMP (whenever
 * cmake finds it) and -march=native are node-llama-cpp's defaults for a build on the machine
 * itself; custom cmake options would move the build to a folder that a plain getLlama() does not
 * look in.
 */
async function compileInChild (options: EnsureNodeBindingOptions): Promise<string> {
  await useInstalledNodeHeaders()
  const logPath = join(dirname(cachedLocalBuildsDir()), 'build.log')
  const log = createWriteStream(logPath, { flags: 'w' })
  const progress = options.onProgress ?? (() => {})
  try {
    progress({ phase: 'configuring' })
    await runStep('compiling node-llama-cpp\'s native binding', process.execPath, [COMPILE_SCRIPT], {
      log,
      logPath,
      signal: options.signal,
      onLine: line => {
        const counted = parseBuildProgress(line)
        if (counted != null) progress({ phase: 'compiling', ...counted })
      }
    })
  } finally {
    await new Promise(resolve => log.end(resolve))
  }
  return logPath
}
