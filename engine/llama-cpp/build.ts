import { createWriteStream } from 'node:fs'
import { copyFile, mkdir, rename, rm, writeFile, access } from 'node:fs/promises'
import { join } from 'node:path'
import { compileJobsForBudget, readCpuBudget } from '../cpu-budget.js'
import { cmakeFlags, resolveGpuBackend, type GpuBackend, type GpuChoice } from './build-options.js'
import { buildKey, llamaCppCacheDir, MANIFEST_FILE, type BuildManifest } from './cache.js'
import { lockCacheEntry } from './cache-lock.js'
import { BuildPrerequisiteError } from './errors.js'
import { findExecutable } from './find-executable.js'
import { parseBuildProgress, runStep, type BuildProgress } from './build-step.js'
import { bundledLlamaCppSource } from './source.js'
import { selectedBuildFile, toolsInBuildDir, type LlamaCppTools } from './tools.js'

/**
 * The cmake targets llmesh runs; nothing else of llama.cpp is compiled (ggml, llama and
 * llama-server's own libraries only as far as these two link them).
 */
const TARGETS = ['ggml-rpc-server', 'llama-server'] as const

export interface EnsureLlamaCppToolsOptions {
  /** GPU backend to compile in (default `auto`) */
  gpu?: GpuChoice
  /** parallel compile jobs (default: every core the CPU budget allows, see compileJobsForBudget) */
  jobs?: number
  /** stops the build; the partial work is kept so the next run resumes it */
  signal?: AbortSignal
  onProgress?: (progress: BuildProgress) => void
}

export interface EnsuredLlamaCppTools extends LlamaCppTools {
  /** true when an earlier build was found and nothing was compiled */
  fromCache: boolean
}

/**
 * Returns the llama.cpp tools for the release node-llama-cpp ships, building them first if
 * the cache has no build for this tag and these flags. Concurrent calls (several `mesh
 * setup` at once) share one build through a lock on the cache entry.
 */
export async function ensureLlamaCppTools (options: EnsureLlamaCppToolsOptions = {}): Promise<EnsuredLlamaCppTools> {
  const backend = resolveGpuBackend(options.gpu ?? 'auto')
  const { tag } = bundledLlamaCppSource()
  const flags = cmakeFlags(backend)
  const buildDir = join(llamaCppCacheDir(), buildKey(tag, flags))

  const cached = await toolsInBuildDir(buildDir)
  if (cached != null) {
    await recordSelectedBuild(tag, buildDir)
    return { ...cached, fromCache: true }
  }

  checkPrerequisites()
  await mkdir(llamaCppCacheDir(), { recursive: true })
  const release = await lockCacheEntry(buildDir, () => options.onProgress?.({ phase: 'waiting' }))
  try {
    // Another process may have finished the same build while this one waited for the lock.
    const builtMeanwhile = await toolsInBuildDir(buildDir)
    if (builtMeanwhile != null) {
      await recordSelectedBuild(tag, buildDir)
      return { ...builtMeanwhile, fromCache: true }
    }
    const tools = await build(buildDir, tag, backend, flags, options)
    await recordSelectedBuild(tag, buildDir)
    return { ...tools, fromCache: false }
  } finally {
    await release()
  }
}

function checkPrerequisites (): void {
  const compiler = process.env.CXX ?? ['c++', 'g++', 'clang++'].find(name => findExecutable(name) != null)
  const missing = [
    findExecutable('cmake') == null ? 'cmake' : undefined,
    compiler == null ? 'a C++ compiler (g++ or clang++)' : undefined,
    findExecutable('git') == null ? 'git' : undefined
  ].filter(item => item != null)
  if (missing.length > 0) {
    throw new BuildPrerequisiteError(`building the llama.cpp tools needs ${missing.join(' and ')}, not found on PATH: install ${missing.length > 1 ? 'them' : 'it'} (Debian/Ubuntu: apt-get install cmake g++ git; macOS: xcode-select --install && brew install cmake) and run "mesh setup" again`)
  }
}

async function build (buildDir: string, tag: string, backend: GpuBackend, flags: string[], options: EnsureLlamaCppToolsOptions): Promise<LlamaCppTools> {
  const started = Date.now()
  const workDir = `${buildDir}.work`
  const sourceDir = join(workDir, 'src')
  const cmakeBuildDir = join(workDir, 'build')
  await mkdir(workDir, { recursive: true })
  const logPath = join(workDir, 'build.log')
  const log = createWriteStream(logPath, { flags: 'a' })
  const step = { log, logPath, signal: options.signal }
  const progress = options.onProgress ?? (() => {})

  try {
    progress({ phase: 'extracting' })
    if (!(await exists(join(sourceDir, 'CMakeLists.txt')))) {
      await rm(sourceDir, { recursive: true, force: true })
      await runStep('extracting the llama.cpp source', 'git', ['-c', 'advice.detachedHead=false', 'clone', '--quiet', bundledLlamaCppSource().bundlePath, sourceDir], step)
    }

    progress({ phase: 'configuring' })
    const generator = findExecutable('ninja') != null ? ['-G', 'Ninja'] : []
    await runStep('configuring llama.cpp (cmake)', 'cmake', ['-S', sourceDir, '-B', cmakeBuildDir, ...generator, ...flags], step)

    progress({ phase: 'compiling', completed: 0 })
    const jobs = options.jobs ?? await defaultCompileJobs()
    await runStep('compiling llama.cpp', 'cmake', ['--build', cmakeBuildDir, '--target', ...TARGETS, '--parallel', String(jobs)], {
      ...step,
      onLine: line => {
        const counted = parseBuildProgress(line)
        if (counted != null) progress({ phase: 'compiling', ...counted })
      }
    })

    progress({ phase: 'installing' })
    return await install(buildDir, join(cmakeBuildDir, 'bin'), {
      llamaCppTag: tag,
      gpu: backend,
      flags,
      builtAt: new Date().toISOString(),
      buildSeconds: Math.round((Date.now() - started) / 1000)
    })
  } finally {
    log.end()
  }
}

/**
 * Copies the two binaries into a staging folder and renames it into place, so a reader
 * never sees a half-installed build; then drops the (large) build tree.
 */
async function install (buildDir: string, binDir: string, facts: Omit<BuildManifest, 'rpcServer' | 'llamaServer'>): Promise<LlamaCppTools> {
  const stagingDir = `${buildDir}.staging`
  await rm(stagingDir, { recursive: true, force: true })
  await mkdir(join(stagingDir, 'bin'), { recursive: true })
  for (const target of TARGETS) {
    await copyFile(join(binDir, target), join(stagingDir, 'bin', target))
  }
  const manifest: BuildManifest = {
    ...facts,
    rpcServer: join(buildDir, 'bin', 'ggml-rpc-server'),
    llamaServer: join(buildDir, 'bin', 'llama-server')
  }
  await writeFile(join(stagingDir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`)
  await rm(buildDir, { recursive: true, force: true })
  await rename(stagingDir, buildDir)
  await rm(`${buildDir}.work`, { recursive: true, force: true })
  return { llamaCppTag: manifest.llamaCppTag, rpcServer: manifest.rpcServer, llamaServer: manifest.llamaServer, flags: manifest.flags }
}

async function defaultCompileJobs (): Promise<number> {
  const { cores, quota } = await readCpuBudget()
  return compileJobsForBudget(cores, quota)
}

async function recordSelectedBuild (tag: string, buildDir: string): Promise<void> {
  await writeFile(selectedBuildFile(tag), `${JSON.stringify({ buildDir })}\n`)
}

async function exists (path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}
