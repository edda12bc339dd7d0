import { spawn, type ChildProcess } from 'node:child_process'
import { MESH_BIN } from '../tools/test-support/run-mesh.js'
import { waitFor } from '../tools/wait-for.js'
import { descendantPids } from './process-tree.js'

/** How long `mesh up` may take to print "ready" on a loaded 2-core machine. */
const READY_TIMEOUT_MS = 300_000

/** A running `mesh up` with its output so far. */
export class MeshUp {
  stdout = ''
  stderr = ''
  readonly child: ChildProcess
  readonly exited: Promise<number | null>

  /** `env`: variables added to the test process's environment besides LLMESH_HOME; `meshBin`: another installation's `mesh` */
  constructor (home: string, args: string[], options: { env?: NodeJS.ProcessEnv, meshBin?: string } = {}) {
    this.child = spawn(process.execPath, [options.meshBin ?? MESH_BIN, 'up', ...args], { env: { ...process.env, ...options.env, LLMESH_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] })
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { this.stdout += chunk })
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { this.stderr += chunk })
    this.exited = new Promise(resolve => { this.child.once('exit', code => { resolve(code) }) })
  }

  async ready (): Promise<void> {
    const gone = new AbortController()
    void this.exited.then(code => { gone.abort(new Error(`mesh up exited with code ${String(code)} before "ready"`)) })
    await waitFor('"ready" from mesh up', async () => /^ready$/m.test(this.stdout) ? true : undefined, READY_TIMEOUT_MS, gone.signal)
      .catch((err: Error) => { throw new Error(`${err.message}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`) })
  }

  /** Kills mesh up and everything below it, for clean-up after a failed test. */
  async kill (): Promise<void> {
    if (this.child.pid === undefined || this.child.exitCode !== null) return
    for (const pid of await descendantPids(this.child.pid)) {
      try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ }
    }
    this.child.kill('SIGKILL')
    await this.exited
  }
}
