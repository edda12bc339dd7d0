import { readFileSync } from 'node:fs'
import { bundledLlamaCppSource } from '../engine/llama-cpp/source.js'

/** `mesh --version`: llmesh's own version and the llama.cpp tag every node builds (nodes must agree on it). */
export function versionLine (): string {
  // dist/tools/version.js -> the package root, where npm keeps package.json whether installed globally or linked.
  const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return `llmesh ${version} (llama.cpp ${bundledLlamaCppSource().tag})`
}
