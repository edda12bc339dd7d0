import { spawn } from 'node:child_process'
import type { WriteStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { LlamaCppBuildError } from './errors.js'

/** Where a build stands; the llama.cpp tools and node-llama-cpp's native binding report the same phases. */
export type BuildPhase = 'waiting' | 'extracting' | 'configuring' | 'compiling' | 'installing'

export interface BuildProgress {
  phase: BuildPhase
  /** build steps finished so far (compiling only) */
  completed?: number
  /** build steps in total (compiling only) */
  total?: number
}

/** Reads `[12/342]` (ninja) or `[ 35%]` (make) from a build output line. */
export function parseBuildProgress (line: string): { completed: number, total: number } | undefined {
  const ninja = /^\[(\d+)\/(\d+)\]/.exec(line)
  if (ninja != null) return { completed: Number(ninja[1]), total: Number(ninja[2]) }
  const make = /^\[\s*(\d+)%\]/.exec(line)
  if (make != null) return { completed: Number(make[1]), total: 100 }
  return undefined
}

export interface StepOptions {
  log: WriteStream
  logPath: string
  signal?: AbortSignal
  onLine?: (line: string) => void
}

/** Runs one build command, appending its output to the build log; rejects with the log's path. */
export async function runStep (what: string, command: string, args: string[], options: StepOptions): Promise<void> {
  options.signal?.throwIfAborted()
  options.log.write(`\n$ ${command} ${args.join(' ')}\n`)
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], signal: options.signal })
  const lastLines: string[] = []
  const onLine = (line: string): void => {
    options.log.write(`${line}\n`)
    lastLines.push(line)
    if (lastLines.length > 20) lastLines.shift()
    options.onLine?.(line)
  }
  createInterface({ input: child.stdout }).on('line', onLine)
  createInterface({ input: child.stderr }).on('line', onLine)

  const exitCode = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  })
  if (exitCode !== 0) {
    const firstError = lastLines.find(line => /error/i.test(line))
    throw new LlamaCppBuildError(`${what} failed (${command} exited with code ${exitCode})${firstError != null ? `: ${firstError.trim()}` : ''}; full log: ${options.logPath}`, options.logPath)
  }
}
