import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import type { GpuBackend } from './build-options.js'

/** What a finished build records next to its binaries; a build directory without it is incomplete. */
export interface BuildManifest {
  llamaCppTag: string
  gpu: GpuBackend
  flags: string[]
  rpcServer: string
  llamaServer: string
  builtAt: string
  buildSeconds: number
}

export const MANIFEST_FILE = 'manifest.json'

/** Root of llmesh's cache: `$LLMESH_CACHE`, default `~/.cache/llmesh`. */
export function llmeshCacheDir (): string {
  const fromEnv = process.env.LLMESH_CACHE
  return fromEnv != null && fromEnv !== '' ? fromEnv : join(homedir(), '.cache', 'llmesh')
}

/** Folder holding every llama.cpp build, one subfolder per cache key. */
export function llamaCppCacheDir (): string {
  return join(llmeshCacheDir(), 'llama.cpp')
}

/**
 * The cache key of a build: the llama.cpp tag plus a hash of the cmake flags, so a build
 * is reused exactly when the same source is compiled the same way.
 */
export function buildKey (llamaCppTag: string, flags: readonly string[]): string {
  const flagsHash = createHash('sha256').update(flags.join('\n')).digest('hex').slice(0, 12)
  return `${llamaCppTag.replace(/[^A-Za-z0-9._-]/g, '_')}-${flagsHash}`
}

/** Reads the manifest of a finished build, or undefined when that build does not exist. */
export async function readManifest (buildDir: string): Promise<BuildManifest | undefined> {
  let text: string
  try {
    text = await readFile(join(buildDir, MANIFEST_FILE), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  return JSON.parse(text) as BuildManifest
}
