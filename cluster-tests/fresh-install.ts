import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { MESH_BIN } from '../tools/test-support/run-mesh.js'

/** The clone the tests run from: MESH_BIN is its dist/tools/mesh.cjs. */
const REPO = dirname(dirname(dirname(MESH_BIN)))

/** Copies a tree as hard links (a second), or as a copy where the temporary folder is on another file system. */
async function copyTree (from: string, to: string): Promise<void> {
  try {
    await promisify(execFile)('cp', ['-al', from, to])
  } catch {
    await rm(to, { recursive: true, force: true })
    await promisify(execFile)('cp', ['-a', from, to])
  }
}

export interface FreshInstall {
  /** its `mesh` entry point */
  meshBin: string
  /** node-llama-cpp's build folder there, which getLlama looks in for a native binding */
  localBuilds: string
  remove: () => Promise<void>
}

/**
 * A second installation of this clone, as `npm install` leaves one on a new machine: the same
 * compiled code and packages, except node-llama-cpp, a copy without a native binding. Its
 * processes load that copy, so whatever they build or link there leaves this clone's binding,
 * which other tests load, alone.
 */
export async function freshInstall (): Promise<FreshInstall> {
  const root = await mkdtemp(join(tmpdir(), 'llmesh-fresh-install-'))
  try {
    // dist is copied, not linked: Node resolves a module's packages from its real path.
    await copyTree(join(REPO, 'dist'), join(root, 'dist'))
    for (const entry of await readdir(REPO)) {
      if (entry !== 'dist' && entry !== 'node_modules') await symlink(join(REPO, entry), join(root, entry))
    }
    await mkdir(join(root, 'node_modules'))
    for (const entry of await readdir(join(REPO, 'node_modules'))) {
      if (entry !== 'node-llama-cpp') await symlink(join(REPO, 'node_modules', entry), join(root, 'node_modules', entry))
    }
    const nodeLlamaCpp = join(root, 'node_modules', 'node-llama-cpp')
    await copyTree(join(REPO, 'node_modules', 'node-llama-cpp'), nodeLlamaCpp)
    const localBuilds = join(nodeLlamaCpp, 'llama', 'localBuilds')
    await rm(localBuilds, { recursive: true, force: true })
    return { meshBin: join(root, 'dist', 'tools', 'mesh.cjs'), localBuilds, remove: async () => { await rm(root, { recursive: true, force: true }) } }
  } catch (err) {
    await rm(root, { recursive: true, force: true })
    throw err
  }
}
