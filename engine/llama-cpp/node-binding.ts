import { access } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { getLlama, LlamaLogLevel, type LlamaOptions } from 'node-llama-cpp'

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

/**
 * Compiles node-llama-cpp's native binding from the llama.cpp source node-llama-cpp bundles (the
 * same tag llama-server is built from), for this CPU and with OpenMP; skipped when one exists.
 * node-llama-cpp keeps the build inside its package (llama/localBuilds), where getLlama finds it.
 */
export async function ensureNodeBinding (options: EnsureNodeBindingOptions = {}): Promise<NodeBindingResult> {
  const started = performance.now()
  if (options.rebuild !== true && await hasNativeNodeBinding()) return { built: false, seconds: 0 }
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
  return { built: true, seconds: (performance.now() - started) / 1000 }
}
