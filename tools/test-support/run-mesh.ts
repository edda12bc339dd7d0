import { spawn } from 'node:child_process'
import { MESH_BIN } from '../mesh-entry.js'

export { MESH_BIN }

export interface MeshResult {
  code: number | null
  stdout: string
  stderr: string
}

export interface RunMeshOptions {
  /** variables added to (or, when undefined, removed from) the test process's environment */
  env?: Record<string, string | undefined>
  /** kill the command after this many milliseconds (default 120 s) */
  timeoutMs?: number
}

/** Runs `mesh ARGS...` as a child process and collects its exit code and output. */
export async function runMesh (args: string[], options: RunMeshOptions = {}): Promise<MeshResult> {
  const env = { ...process.env, ...options.env }
  for (const [name, value] of Object.entries(options.env ?? {})) {
    if (value === undefined) delete env[name]
  }
  const child = spawn(process.execPath, [MESH_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: options.timeoutMs ?? 120_000 })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  })
  return { code, stdout, stderr }
}
