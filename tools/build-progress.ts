import cliProgress from 'cli-progress'
import { ensureLlamaCppTools, type EnsureLlamaCppToolsOptions, type EnsuredLlamaCppTools } from '../engine/llama-cpp/build.js'
import type { BuildPhase, BuildProgress } from '../engine/llama-cpp/build-step.js'
import { ensureNodeBinding, type NodeBindingResult } from '../engine/llama-cpp/node-binding.js'

const TOOLS_PHASES: Record<BuildPhase, string> = {
  waiting: 'waiting for another mesh setup to finish the same build',
  extracting: 'extracting the llama.cpp source bundled with node-llama-cpp',
  configuring: 'configuring llama.cpp',
  compiling: 'compiling llama-server and ggml-rpc-server',
  installing: 'installing into the cache'
}

const BINDING_PHASES: Record<BuildPhase, string> = {
  waiting: 'waiting for another mesh setup to finish the same build',
  extracting: 'extracting the llama.cpp source bundled with node-llama-cpp',
  configuring: 'configuring node-llama-cpp\'s native binding (the local engine\'s) from the same llama.cpp source',
  compiling: 'compiling the native binding',
  installing: 'installing into the cache'
}

/**
 * Shows one build advancing on stderr, the same for every build: a line per phase, and while
 * compiling a bar of the build steps done (ninja's or make's count) on a terminal, or a line
 * every 15 s in logs.
 */
function buildDisplay (name: string, phases: Record<BuildPhase, string>): { onProgress: (progress: BuildProgress) => void, stop: () => void } {
  const bar = new cliProgress.SingleBar({
    format: `${name} [{bar}] {percentage}% | {value}/{total} steps | {duration_formatted}`,
    stream: process.stderr,
    noTTYOutput: true,
    notTTYSchedule: 15_000,
    hideCursor: true
  }, cliProgress.Presets.shades_classic)
  let phase: BuildPhase | undefined
  let barStarted = false
  const stop = (): void => {
    if (barStarted) bar.stop()
    barStarted = false
  }
  return {
    onProgress: progress => {
      if (progress.phase !== phase) {
        phase = progress.phase
        stop()
        process.stderr.write(`mesh: ${name}: ${phases[phase]}\n`)
      }
      if (progress.total != null && progress.completed != null) {
        if (!barStarted) {
          bar.start(progress.total, progress.completed)
          barStarted = true
        }
        bar.setTotal(progress.total)
        bar.update(progress.completed)
      }
    },
    stop
  }
}

/** Builds (or finds) the llama.cpp tools, showing the build on stderr. */
export async function ensureLlamaCppToolsWithProgress (options: Omit<EnsureLlamaCppToolsOptions, 'onProgress'> = {}): Promise<EnsuredLlamaCppTools> {
  const display = buildDisplay('llama.cpp tools', TOOLS_PHASES)
  try {
    return await ensureLlamaCppTools({ ...options, onProgress: display.onProgress })
  } finally {
    display.stop()
  }
}

/**
 * Builds node-llama-cpp's native binding (the local engine's) unless the cache has it, showing
 * the build on stderr like the tools'; node-llama-cpp's own prebuilt binary lacks OpenMP and
 * decoded 40x slower on 2 threads.
 */
export async function ensureNodeBindingWithProgress (options: { signal?: AbortSignal } = {}): Promise<NodeBindingResult> {
  const display = buildDisplay('native binding', BINDING_PHASES)
  let result: NodeBindingResult
  try {
    result = await ensureNodeBinding({ signal: options.signal, onProgress: display.onProgress })
  } finally {
    display.stop()
  }
  if (result.built) process.stderr.write(`mesh: native binding: built in ${Math.round(result.seconds)} s (log: ${result.logPath ?? '-'})\n`)
  return result
}
