import cliProgress from 'cli-progress'
import { ensureLlamaCppTools, type BuildPhase, type EnsureLlamaCppToolsOptions, type EnsuredLlamaCppTools } from '../engine/llama-cpp/build.js'
import { ensureNodeBinding, type NodeBindingResult } from '../engine/llama-cpp/node-binding.js'

const PHASE_LABELS: Record<BuildPhase, string> = {
  waiting: 'waiting for another mesh setup to finish the same build',
  extracting: 'extracting the llama.cpp source bundled with node-llama-cpp',
  configuring: 'configuring llama.cpp',
  compiling: 'compiling llama-server and ggml-rpc-server',
  installing: 'installing into the cache'
}

/**
 * Builds (or finds) the llama.cpp tools while showing the build advancing on stderr: a bar
 * on a terminal, a line every few seconds in logs.
 */
export async function ensureLlamaCppToolsWithProgress (options: Omit<EnsureLlamaCppToolsOptions, 'onProgress'> = {}): Promise<EnsuredLlamaCppTools> {
  const bar = new cliProgress.SingleBar({
    format: 'llama.cpp build [{bar}] {percentage}% | {value}/{total} steps | {duration_formatted}',
    stream: process.stderr,
    noTTYOutput: true,
    notTTYSchedule: 15_000,
    hideCursor: true
  }, cliProgress.Presets.shades_classic)
  let phase: BuildPhase | undefined
  let barStarted = false

  try {
    return await ensureLlamaCppTools({
      ...options,
      onProgress: progress => {
        if (progress.phase !== phase) {
          phase = progress.phase
          if (barStarted) {
            bar.stop()
            barStarted = false
          }
          process.stderr.write(`mesh setup: ${PHASE_LABELS[phase]}\n`)
        }
        if (progress.total != null && progress.completed != null) {
          if (!barStarted) {
            bar.start(progress.total, progress.completed)
            barStarted = true
          }
          bar.setTotal(progress.total)
          bar.update(progress.completed)
        }
      }
    })
  } finally {
    if (barStarted) bar.stop()
  }
}

/**
 * Builds node-llama-cpp's native binding (the local engine's) unless the cache has it,
 * showing cmake's progress on stderr; node-llama-cpp's own prebuilt binary lacks OpenMP and
 * decoded 40x slower on 2 threads.
 */
export async function ensureNodeBindingWithProgress (): Promise<NodeBindingResult> {
  const result = await ensureNodeBinding({
    progressLogs: 'stderr',
    onWaiting: () => { process.stderr.write('mesh setup: waiting for another mesh setup to finish the native binding\n') },
    onBuildStart: () => { process.stderr.write('mesh setup: building node-llama-cpp\'s native binding from the same llama.cpp source (about 8 minutes on 2 cores)\n') }
  })
  if (result.built) process.stderr.write(`mesh setup: built node-llama-cpp's native binding in ${Math.round(result.seconds)} s\n`)
  return result
}
