import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { autoGpuBackend, cmakeFlags, type GpuBackend, type GpuChoice } from './build-options.js'
import { buildKey, llamaCppCacheDir, readManifest, type BuildManifest } from './cache.js'
import { LlamaCppToolsMissingError } from './errors.js'
import { isExecutable } from './find-executable.js'
import { bundledLlamaCppSource } from './source.js'

/** Paths of the built llama.cpp tools; `mesh setup --print` prints exactly these fields. */
export interface LlamaCppTools {
  llamaCppTag: string
  rpcServer: string
  llamaServer: string
  flags: string[]
}

export interface FindLlamaCppToolsOptions {
  /** Which build to look for; `auto` means the one `mesh setup` built last for this llama.cpp tag */
  gpu?: GpuChoice
}

/** Folder of the build of the bundled llama.cpp release with the given backend. */
export function buildDirFor (backend: GpuBackend): string {
  const { tag } = bundledLlamaCppSource()
  return join(llamaCppCacheDir(), buildKey(tag, cmakeFlags(backend)))
}

/** File recording which build `mesh setup` made last for a tag; `--gpu auto` lookups follow it. */
export function selectedBuildFile (llamaCppTag: string): string {
  return join(llamaCppCacheDir(), `selected-${llamaCppTag}.json`)
}

async function selectedBuildDir (llamaCppTag: string): Promise<string | undefined> {
  try {
    const { buildDir } = JSON.parse(await readFile(selectedBuildFile(llamaCppTag), 'utf8')) as { buildDir?: unknown }
    return typeof buildDir === 'string' ? buildDir : undefined
  } catch {
    return undefined
  }
}

/** Returns the tools of a finished, intact build in `buildDir`, or undefined. */
export async function toolsInBuildDir (buildDir: string): Promise<LlamaCppTools | undefined> {
  const manifest: BuildManifest | undefined = await readManifest(buildDir)
  if (manifest == null) return undefined
  if (!isExecutable(manifest.llamaServer) || !isExecutable(manifest.rpcServer)) return undefined
  return { llamaCppTag: manifest.llamaCppTag, rpcServer: manifest.rpcServer, llamaServer: manifest.llamaServer, flags: manifest.flags }
}

/**
 * Finds the llama.cpp tools built by `mesh setup` for the llama.cpp release that
 * node-llama-cpp ships. Throws LlamaCppToolsMissingError, which tells the user what to run.
 */
export async function findLlamaCppTools (options: FindLlamaCppToolsOptions = {}): Promise<LlamaCppTools> {
  const { tag } = bundledLlamaCppSource()
  const gpu = options.gpu ?? 'auto'
  const candidates = gpu === 'auto'
    ? [await selectedBuildDir(tag), buildDirFor(autoGpuBackend())]
    : [buildDirFor(gpu)]
  for (const dir of candidates) {
    if (dir == null) continue
    const tools = await toolsInBuildDir(dir)
    if (tools != null && tools.llamaCppTag === tag) return tools
  }
  const setupCommand = gpu === 'auto' ? 'mesh setup' : `mesh setup --gpu ${gpu}`
  throw new LlamaCppToolsMissingError(`the llama.cpp tools (llama-server, ggml-rpc-server) for llama.cpp ${tag} are not built yet: run "${setupCommand}" (cache: ${llamaCppCacheDir()})`)
}

/**
 * The environment to run a llama.cpp tool in. ggml's abort, which llama-server takes when a
 * worker's connection breaks, otherwise attaches gdb (where installed) to print a backtrace:
 * half a second or more before the coordinator can re-plan, for a crash it expects.
 */
export function llamaCppToolEnv (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, GGML_NO_BACKTRACE: '1', ...extra }
}
