import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { basename, join } from 'node:path'
import { CLibraryBuildError } from './errors.js'
import { llmeshCacheDir } from './llama-cpp/cache.js'

/** A shared library llmesh compiles from its own C source. */
export interface CLibrary {
  /** the C files, and the headers they include (hashed with them, not compiled) */
  sources: readonly string[]
  /** the folder under llmesh's cache, and the start of the library's file name */
  name: string
  /** compiler arguments besides -shared -fPIC -O2 and the output */
  args?: string[]
  /** what else the build depends on (a node version, say): another key is another build */
  key?: string
}

/**
 * Compiles `library` with the system's C compiler (`cc`, which `mesh setup` needs anyway) on
 * first use, and returns its path. Builds are cached by a hash of the sources, the arguments
 * and the key, readable by every user (a child may run as another user, e.g. a service's).
 * Throws CLibraryBuildError with the compiler's complaint.
 */
export function buildCLibrary (library: CLibrary): string {
  const args = library.args ?? []
  const hash = createHash('sha256')
  for (const source of library.sources) hash.update(basename(source)).update(readFileSync(source))
  const digest = hash.update(args.join('\n')).update(library.key ?? '').digest('hex').slice(0, 12)
  const dir = join(llmeshCacheDir(), library.name)
  const path = join(dir, `llmesh-${library.name}-${digest}.so`)
  if (existsSync(path)) return path
  mkdirSync(dir, { recursive: true })
  chmodSync(dir, 0o755)
  // Built under a name of its own and renamed into place: several processes may build it at once.
  const partial = `${path}.${process.pid}.partial`
  try {
    const compiled = library.sources.filter(source => source.endsWith('.c'))
    execFileSync('cc', ['-shared', '-fPIC', '-O2', ...args, '-o', partial, ...compiled], { stdio: ['ignore', 'ignore', 'pipe'] })
    chmodSync(partial, 0o755)
    renameSync(partial, path)
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim()
    throw new CLibraryBuildError(`cannot build ${path}: ${stderr !== undefined && stderr !== '' ? stderr : (err as Error).message}`)
  } finally {
    rmSync(partial, { force: true })
  }
  return path
}
