import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { controlRequest } from '../node/control-socket.js'
import { dataDir } from '../node/data-dir.js'
import { requestStatus } from '../node/status-request.js'
import { MESH_BIN, runMesh, type MeshResult } from '../tools/test-support/run-mesh.js'
import { waitFor } from '../tools/wait-for.js'
import type { StatusReport } from '../node/status-report.js'

export { waitFor }

/** A `mesh start` process with its collected log lines. */
export class MeshProcess {
  readonly home: string
  readonly lines: string[] = []
  private readonly child: ChildProcess
  private readonly exited: Promise<number | null>

  /** `netns`: run inside this network namespace (through `ip netns exec`). */
  constructor (home: string, args: string[], netns?: string) {
    this.home = home
    const command = [process.execPath, MESH_BIN, 'start', ...args]
    if (netns !== undefined) command.unshift('ip', 'netns', 'exec', netns)
    this.child = spawn(command[0], command.slice(1), { env: { ...process.env, LLMESH_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] })
    let partial = ''
    const collect = (chunk: string): void => {
      partial += chunk
      const parts = partial.split('\n')
      partial = parts.pop() ?? ''
      this.lines.push(...parts)
    }
    this.child.stdout?.setEncoding('utf8').on('data', collect)
    this.child.stderr?.setEncoding('utf8').on('data', collect)
    this.exited = new Promise(resolve => { this.child.once('exit', code => { resolve(code) }) })
  }

  /** Process id of the node (of `ip netns exec`, which becomes the node, inside a namespace). */
  get pid (): number | undefined {
    return this.child.pid
  }

  /** Resolves with the first log line matching `pattern` (and when it was seen). */
  async waitForLine (pattern: RegExp, timeoutMs = 30_000): Promise<{ line: string, at: number }> {
    const deadline = Date.now() + timeoutMs
    let checked = 0
    while (Date.now() < deadline) {
      for (; checked < this.lines.length; checked++) {
        if (pattern.test(this.lines[checked])) return { line: this.lines[checked], at: Date.now() }
      }
      if (this.child.exitCode !== null) break
      await delay(50)
    }
    throw new Error(`no log line matching ${String(pattern)} within ${timeoutMs} ms; log:\n${this.lines.join('\n')}`)
  }

  /** The node's first listen multiaddr (with /p2p/), once it logged it. */
  async listenAddr (): Promise<string> {
    const { line } = await this.waitForLine(/listening on /)
    return line.slice(line.indexOf('listening on ') + 'listening on '.length).trim()
  }

  /** Sends `signal` and waits for the process to exit; SIGKILL after `killAfterMs`. */
  async stop (signal: NodeJS.Signals = 'SIGTERM', killAfterMs = 10_000): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal)
    const timer = setTimeout(() => { this.child.kill('SIGKILL') }, killAfterMs)
    const code = await this.exited
    clearTimeout(timer)
    return code
  }
}

/** Runs a one-shot `mesh` command with LLMESH_HOME set. */
export async function mesh (home: string, args: string[]): Promise<MeshResult> {
  return runMesh(args, { env: { LLMESH_HOME: home }, timeoutMs: 60_000 })
}

/** Runs a `mesh` command that must succeed and returns its stdout. */
export async function meshOk (home: string, args: string[]): Promise<string> {
  const result = await mesh(home, args)
  if (result.code !== 0) throw new Error(`mesh ${args.join(' ')} failed (${result.code}): ${result.stderr}`)
  return result.stdout
}

/** The node's `mesh status --json` through its control socket. */
export async function status (home: string): Promise<StatusReport> {
  return await requestStatus(dataDir(home))
}

/** Every member's capabilities as the node reads them from the private DHT. */
export async function clusterCapabilities (home: string): Promise<Record<string, { memoryBytes: number, cpuCores: number }>> {
  const dir = dataDir(home)
  return await controlRequest(dir.controlSocket, dir.root, { op: 'capabilities' }, 20_000) as Record<string, { memoryBytes: number, cpuCores: number }>
}

/** The node's Prometheus metrics text. */
export async function metricsText (home: string): Promise<string> {
  const dir = dataDir(home)
  return (await controlRequest(dir.controlSocket, dir.root, { op: 'metrics' }) as { text: string }).text
}

/** Temporary data dirs that are removed with all the processes started on them. */
export class TestCluster {
  readonly processes: MeshProcess[] = []
  private readonly dirs: string[] = []

  /** A fresh empty data dir. */
  async home (name: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), `llmesh-${name}-`))
    this.dirs.push(dir)
    return dir
  }

  /** Starts `mesh start ARGS` on `home`, optionally inside a network namespace. */
  start (home: string, args: string[], netns?: string): MeshProcess {
    const p = new MeshProcess(home, args, netns)
    this.processes.push(p)
    return p
  }

  /** Stops every process and removes every data dir. */
  async cleanup (): Promise<void> {
    await Promise.all(this.processes.map(async p => p.stop('SIGKILL')))
    await Promise.all(this.dirs.map(async d => rm(d, { recursive: true, force: true })))
  }
}

/** Multiaddr to listen on 127.0.0.1 with an OS-chosen port. */
export function loopbackListen (transport: 'tcp' | 'quic'): string {
  return transport === 'tcp' ? '/ip4/127.0.0.1/tcp/0' : '/ip4/127.0.0.1/udp/0/quic-v1'
}

/** Forms coordinator + two workers from invites; returns them once both workers are alive. */
export async function formThreeNodeCluster (cluster: TestCluster, transport: 'tcp' | 'quic', encryption: 'noise' | 'tls' = 'noise'): Promise<{ coordinator: MeshProcess, workers: MeshProcess[], coordinatorAddr: string }> {
  const listen = ['--listen', loopbackListen(transport), '--no-mdns', '--encryption', encryption]
  const coordinatorHome = await cluster.home('coordinator')
  await meshOk(coordinatorHome, ['init'])
  const coordinator = cluster.start(coordinatorHome, ['--role', 'coordinator', ...listen])
  const coordinatorAddr = await coordinator.listenAddr()
  const workers: MeshProcess[] = []
  for (const name of ['worker1', 'worker2']) {
    const home = await cluster.home(name)
    const invite = (await meshOk(coordinatorHome, ['token', '--role', 'worker', '--ttl', '10m'])).trim()
    await meshOk(home, ['join', invite])
    workers.push(cluster.start(home, ['--role', 'worker', ...listen]))
  }
  await waitFor('two live workers', async () => {
    const report = await status(coordinatorHome)
    return report.members.filter(m => m.role === 'worker' && m.state === 'alive').length === 2 ? true : undefined
  })
  return { coordinator, workers, coordinatorAddr }
}
