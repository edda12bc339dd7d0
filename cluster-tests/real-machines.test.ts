// The README's "On real machines" section, run as written: every machine a network namespace on
// one bridge (a coordinator, two workers, a client), each node with its own LLMESH_HOME, `mesh`
// on the PATH from `npm install -g .`. The commands are read from the README, so that the test
// changes when the README does.
import assert from 'node:assert/strict'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, describe, it } from 'node:test'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { waitFor } from './mesh-harness.js'
import { createNamespaceLan, deleteNamespaceLan, type NamespaceLan } from './netns.js'
import { shortPeerId } from '../node/short-peer-id.js'
import type { StatusReport } from '../node/status-report.js'

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** The commands of the README's real-machines section (its shell blocks, comments dropped). */
async function readmeCommands (): Promise<string[]> {
  const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8')
  const start = readme.indexOf('\n## On real machines\n')
  assert.notEqual(start, -1, 'README.md has no "On real machines" section')
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1))
  const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map(match => match[1].replace(/\\\n\s*/g, ''))
  return blocks.flatMap(block => block.split('\n')).map(line => line.replace(/\s+#.*$/, '').replace(/^#.*$/, '').trim()).filter(line => line !== '')
}

/** The README command that starts with `prefix`. */
function command (commands: string[], prefix: string): string {
  const found = commands.find(line => line.startsWith(prefix))
  assert.ok(found !== undefined, `the README's real-machines section no longer runs "${prefix}..."; change this test with it`)
  return found
}

interface Machine { ns: string, address: string, home: string }

describe('the README\'s real-machines section in network namespaces', { timeout: 600_000 }, () => {
  let lan: NamespaceLan | undefined
  let model: TestModel | undefined
  let prefix: string | undefined
  const homes: string[] = []
  const nodes: ChildProcess[] = []
  let path = ''

  after(async () => {
    // SIGTERM lets each node stop its llama-server and rpc-server; SIGKILL whatever remains.
    await Promise.all(nodes.map(async node => {
      if (node.exitCode !== null || node.signalCode !== null) return
      const exited = new Promise(resolve => node.once('exit', resolve))
      node.kill('SIGTERM')
      const timer = setTimeout(() => node.kill('SIGKILL'), 15_000)
      await exited
      clearTimeout(timer)
    }))
    if (lan !== undefined) await deleteNamespaceLan(lan)
    await Promise.all([...homes, ...(prefix !== undefined ? [prefix] : [])].map(async dir => rm(dir, { recursive: true, force: true })))
    await model?.remove()
  })

  /** Runs a README line with sh inside the machine's namespace; resolves with its output, rejects on failure. */
  async function sh (machine: Machine, line: string, env: Record<string, string> = {}): Promise<string> {
    return await new Promise((resolve, reject) => {
      execFile('ip', ['netns', 'exec', machine.ns, 'sh', '-c', line], { cwd: machine.home, env: { ...process.env, PATH: path, LLMESH_HOME: machine.home, ...env }, timeout: 120_000 }, (err, stdout, stderr) => {
        if (err !== null) reject(new Error(`${line} failed in ${machine.ns}: ${err.message}\n${stderr}`))
        else resolve(stdout)
      })
    })
  }

  /** Starts a long-running README line (mesh start) in the machine's namespace; resolves once `ready` matches its log. */
  async function start (machine: Machine, line: string, ready: RegExp): Promise<string[]> {
    const lines: string[] = []
    const node = spawn('ip', ['netns', 'exec', machine.ns, 'sh', '-c', `exec ${line}`], { cwd: machine.home, env: { ...process.env, PATH: path, LLMESH_HOME: machine.home }, stdio: ['ignore', 'pipe', 'pipe'] })
    nodes.push(node)
    for (const stream of [node.stdout, node.stderr]) stream.setEncoding('utf8').on('data', (chunk: string) => { lines.push(...chunk.split('\n')) })
    await waitFor(`"${line}" in ${machine.ns} to log ${String(ready)}`, async () => {
      if (node.exitCode !== null) throw new Error(`"${line}" exited ${node.exitCode}:\n${lines.join('\n')}`)
      return lines.some(l => ready.test(l)) ? true : undefined
    }, 60_000)
    return lines
  }

  async function status (machine: Machine): Promise<StatusReport> {
    return JSON.parse(await sh(machine, 'mesh status --json')) as StatusReport
  }

  it('installs, forms a cluster found by mDNS, and serves a chat completion over TLS to a fourth machine', async t => {
    const tag = `r${process.pid % 10000}`
    lan = await createNamespaceLan(tag, 4)
    if (lan === undefined) return t.skip('"ip netns add" was refused on this machine (needs root or CAP_NET_ADMIN)')
    const commands = await readmeCommands()
    const machines: Machine[] = []
    for (const [i, ns] of lan.hosts.entries()) {
      const home = await mkdtemp(join(tmpdir(), `llmesh-real-${i}-`))
      homes.push(home)
      machines.push({ ns, address: lan.addresses[i], home })
    }
    const [coordinator, worker1, worker2, client] = machines

    // Install: this clone is built already (the test command compiles it), so the README's global
    // install alone runs, as written (its --ignore-scripts keeps npm's prepare script from
    // rewriting dist/ under the tests running beside this one); --prefix keeps the install inside
    // the test; linking a folder needs no registry (--offline).
    const install = command(commands, 'npm install && npm install -g ')
    assert.match(install, /^npm install && npm install -g --ignore-scripts \.$/)
    prefix = await mkdtemp(join(tmpdir(), 'llmesh-prefix-'))
    await new Promise<void>((resolve, reject) => {
      const globalInstall = install.split(' && ')[1].split(' ').slice(1)
      execFile('npm', [...globalInstall, '--prefix', prefix as string, '--no-audit', '--no-fund', '--offline'], { cwd: REPO_ROOT, timeout: 300_000 }, err => { if (err !== null) reject(err); else resolve() })
    })
    path = [join(prefix, 'bin'), process.env.PATH ?? ''].join(delimiter)
    for (const machine of [coordinator, worker1, worker2]) {
      assert.match(await sh(machine, command(commands, 'mesh --version')), /^llmesh \d+\.\d+\.\d+ \(llama\.cpp \S+\)\n$/)
      await sh(machine, command(commands, 'mesh setup'))
    }

    model = await writeTestModel()
    await sh(coordinator, command(commands, 'mesh init'))
    const startCoordinator = command(commands, 'mesh start --role coordinator').replace('path/to/model.gguf', model.path)
    const coordinatorLog = await start(coordinator, startCoordinator, /API listening on https:/)
    await sh(coordinator, command(commands, 'mesh ca-cert'))
    const ca = await readFile(join(coordinator.home, 'llmesh-ca.pem'), 'utf8')
    assert.match(ca, /^-----BEGIN CERTIFICATE-----/)

    const join_ = command(commands, 'mesh join ')
    const startWorker = command(commands, 'mesh start --role worker')
    for (const worker of [worker1, worker2]) {
      const invite = (await sh(coordinator, command(commands, 'mesh token'))).trim()
      await sh(worker, join_.replace(/'[^']*'/, `'${invite}'`))
      await start(worker, startWorker, /listening on /)
    }

    const workerIds = await Promise.all([worker1, worker2].map(async worker => (await status(worker)).self.peerId))
    await waitFor('the coordinator to see both workers alive', async () => {
      const { members } = await status(coordinator)
      return workerIds.every(id => members.some(m => m.peerId === id && m.state === 'alive')) ? true : undefined
    }, 60_000)
    // The workers learnt only the coordinator's address from their invites: they found each
    // other on the LAN by mDNS.
    await waitFor('worker 1 to connect to worker 2, found by mDNS', async () => {
      const member = (await status(worker1)).members.find(m => m.peerId === workerIds[1])
      return member?.addresses.some(a => a.includes(`/ip4/${worker2.address}/`)) === true ? true : undefined
    }, 60_000)
    // Each worker joining re-plans the engine: the clients below come once the plan holds both.
    await waitFor('the coordinator to serve with both workers', async () => {
      const { engine } = await status(coordinator)
      const groups = JSON.stringify(engine?.groups ?? [])
      return engine?.state === 'ready' && workerIds.every(id => groups.includes(id)) ? true : undefined
    }, 120_000)
    const shown = await sh(coordinator, command(commands, 'mesh status'))
    for (const id of workerIds) assert.ok(shown.includes(shortPeerId(id)), `mesh status names worker ${id}:\n${shown}`)

    // The client machine: curl and the openai package, trusting the CA that mesh ca-cert printed.
    await writeFile(join(client.home, 'llmesh-ca.pem'), ca)
    const apiKey = (await readFile(join(coordinator.home, 'api-key'), 'utf8')).trim()
    const curl = command(commands, 'curl --cacert llmesh-ca.pem').replace('COORDINATOR', coordinator.address)
    let last: unknown
    const reply = await waitFor('a chat completion over TLS from the client machine', async () => {
      last = await sh(client, curl, { API_KEY: apiKey }).catch((err: Error) => err.message)
      const answer = JSON.parse(String(last)) as { object?: string }
      return answer.object === 'chat.completion' ? answer : undefined
    }, 180_000).catch((err: Error) => { throw new Error(`${err.message}; last answer: ${String(last)}; coordinator log:\n${coordinatorLog.join('\n')}`) })
    assert.equal(reply.object, 'chat.completion')

    await writeFile(join(client.home, 'app.mjs'), [
      `import OpenAI from ${JSON.stringify(import.meta.resolve('openai'))}`,
      `const client = new OpenAI({ apiKey: process.env.API_KEY, baseURL: 'https://${coordinator.address}:8080/v1' })`,
      'const reply = await client.chat.completions.create({ model: \'model\', messages: [{ role: \'user\', content: \'Hello\' }], max_tokens: 4, temperature: 0 })',
      'process.stdout.write(reply.object)'
    ].join('\n'))
    assert.equal(await sh(client, command(commands, 'NODE_EXTRA_CA_CERTS=llmesh-ca.pem node app.mjs'), { API_KEY: apiKey }), 'chat.completion')
  })
})
