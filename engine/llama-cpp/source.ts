import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The llama.cpp source that the pinned node-llama-cpp package ships, and its release tag. */
export interface LlamaCppSource {
  /** llama.cpp release tag, e.g. "v0.4.0"; every node of a cluster must share it */
  tag: string
  /** GitHub repository the tag belongs to, e.g. "ggml-org/llama.cpp" */
  repo: string
  /** git bundle holding that release's source tree */
  bundlePath: string
  /** the installed node-llama-cpp package: its folder and version */
  nodeLlamaCpp: { dir: string, version: string }
}

let cached: LlamaCppSource | undefined

/** Reads the release information of the llama.cpp source bundled with node-llama-cpp. */
export function bundledLlamaCppSource (): LlamaCppSource {
  if (cached != null) return cached
  // node-llama-cpp's exports map hides package.json, so resolve its entry point and walk up.
  const entry = fileURLToPath(import.meta.resolve('node-llama-cpp'))
  const packageRoot = join(dirname(entry), '..')
  const llamaDir = join(packageRoot, 'llama')
  const info = JSON.parse(readFileSync(join(llamaDir, 'llama.cpp.info.json'), 'utf8')) as { tag?: unknown, llamaCppGithubRepo?: unknown }
  if (typeof info.tag !== 'string' || typeof info.llamaCppGithubRepo !== 'string') {
    throw new Error(`node-llama-cpp's ${join(llamaDir, 'llama.cpp.info.json')} does not name a llama.cpp release; reinstall dependencies with "npm install"`)
  }
  const { version } = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }
  cached = { tag: info.tag, repo: info.llamaCppGithubRepo, bundlePath: join(llamaDir, 'gitRelease.bundle'), nodeLlamaCpp: { dir: packageRoot, version } }
  return cached
}
