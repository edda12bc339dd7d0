import { access, lstat, mkdir, readdir, readlink, rename, rm, symlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { getLlama, LlamaLogLevel, type LlamaOptions } from 'node-llama-cpp'
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
  /** print cmake's progress: true for stdout, 'stderr' (the default), false for none */
  progressLogs?: boolean | 'stderr'
  /** called when another `mesh setup` is building the binding and this one waits for it */
  onWaiting?: () => void
  /** called when the build starts (none was cached) */
  onBuildStart?: () => void
}

export interface NodeBindingResult {
  /** true when this call compiled the binding, false when a native build was already there */
  built: boolean
  seconds: number
}

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
  const release = await lockCacheEntry(cachedLocalBuildsDir(), options.onWaiting)
  try {
    if (options.rebuild !== true && await hasNativeNodeBinding()) return { built: false, seconds: 0 }
    options.onBuildStart?.()
    await useInstalledNodeHeaders()
    const llama = await getLlama({
      ...NODE_LLAMA_OPTIONS,
      // OpenMP (whenever cmake finds it) and -march=native are node-llama-cpp's defaults for a
      // build on the machine itself; custom cmake options would move the build to a folder that a
      // plain getLlama() does not look in.
      build: 'forceRebuild',
      progressLogs: options.progressLogs ?? 'stderr'
    })
    await llama.dispose()
  } finally {
    await release()
  }
  return { built: true, seconds: (performance.now() - started) / 1000 }
}
