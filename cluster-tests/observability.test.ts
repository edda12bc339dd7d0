// A real coordinator with two workers, debug logging on: a canary sent in prompts must reach no
// log line, no metric, no audit record and no file in any data dir; every process runs with core
// dumps off; /metrics, the audit ledger
// and the full `mesh status` show what the cluster did; a SIGKILL under load leaves a ledger
// that verifies. The coordinator runs two parallel slots, and generates two requests at once.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { lstat, readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { STATUS_WIDTH } from '../tools/status-render.js'
import { MESH_BIN } from '../tools/test-support/run-mesh.js'
import { loopbackListen, mesh, meshOk, status, TestCluster, waitFor, type MeshProcess } from './mesh-harness.js'
import type { AuditRecord } from '../node/audit-ledger.js'
import { freePort } from '../engine/free-port.js'
import { bannedTokenBias, streamCompletion } from '../tools/bench/failover-bench.js'
import { descendantPids } from './process-tree.js'
import { recordDashboardEvents } from './dashboard-events.js'

const READY_TIMEOUT_MS = 240_000
const CANARY = `canary-${randomUUID()}`
const ESC = '\u001b'
const HOME = `${ESC}[H`

/** Every regular file under `root`, recursively. */
async function filesUnder (root: string): Promise<string[]> {
  const out: string[] = []
  for (const entry of await readdir(root, { withFileTypes: true })) {
    const path = join(root, entry.name)
    if (entry.isDirectory()) out.push(...await filesUnder(path))
    else if ((await lstat(path)).isFile()) out.push(path)
  }
  return out
}

describe('observability of a real cluster', () => {
  const cluster = new TestCluster()
  let model: TestModel
  let coordinator: MeshProcess
  let workers: MeshProcess[]
  let homes: string[]
  let coordinatorHome: string
  let apiUrl: string
  let apiKey: string
  const previousLog = process.env.LLMESH_LOG

  before(async () => {
    // The nodes inherit this process's environment: debug logging on, so that the search means something.
    process.env.LLMESH_LOG = 'debug'
    model = await writeTestModel()
    const listen = ['--listen', loopbackListen('tcp'), '--no-mdns']
    coordinatorHome = await cluster.home('obs-coordinator')
    await meshOk(coordinatorHome, ['init'])
    apiKey = (await readFile(join(coordinatorHome, 'api-key'), 'utf8')).trim()
    const apiPort = await freePort()
    apiUrl = `http://127.0.0.1:${apiPort}`
    coordinator = cluster.start(coordinatorHome, ['--role', 'coordinator', ...listen, '--model', model.path, '--engine', 'cluster', '--api-port', String(apiPort),
      // A fixed plan: measured speeds on a loaded machine could leave a worker without layers.
      '--stages', '0-0,1-2,3-3', '--parallel', '2'])
    await coordinator.listenAddr()
    workers = []
    homes = [coordinatorHome]
    for (const name of ['obs-worker1', 'obs-worker2']) {
      const home = await cluster.home(name)
      homes.push(home)
      const invite = (await meshOk(coordinatorHome, ['token', '--role', 'worker', '--ttl', '10m'])).trim()
      await meshOk(home, ['join', invite])
      // The second worker locks its rpc-server's memory, where this machine allows it.
      workers.push(cluster.start(home, ['--role', 'worker', ...listen, ...(name === 'obs-worker2' ? ['--mlock'] : [])]))
    }
    await waitFor('the cluster engine with two workers', async () => {
      const report = await status(coordinatorHome)
      const engine = report.engine
      return engine?.state === 'ready' && engine.kind === 'llama-server' && (engine.plan?.stages.length ?? 0) === 3 ? true : undefined
    }, READY_TIMEOUT_MS).catch((err: Error) => { throw new Error(`${err.message}; coordinator log:\n${coordinator.lines.join('\n')}`) })
  })

  after(async () => {
    if (previousLog === undefined) delete process.env.LLMESH_LOG
    else process.env.LLMESH_LOG = previousLog
    await cluster.cleanup()
    await model?.remove()
  })

  async function post (path: string, body: unknown): Promise<Response> {
    return await fetch(apiUrl + path, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` }, body: JSON.stringify(body) })
  }

  it('serves chat and text completions, streamed and whole, with the canary in every prompt; the dashboard\'s status and event stream carry none of it', async () => {
    // The web dashboard's event stream, open while the requests run.
    const events = await recordDashboardEvents(apiUrl, apiKey)
    const chat = { model: 'model', messages: [{ role: 'user', content: `Remember ${CANARY} and repeat it.` }], max_tokens: 8, temperature: 0 }
    const text = { model: 'model', prompt: `The secret is ${CANARY}. Again: ${CANARY}`, max_tokens: 8, temperature: 0 }
    for (const [path, body] of [['/v1/chat/completions', chat], ['/v1/completions', text]] as const) {
      for (const stream of [false, true]) {
        const response = await post(path, { ...body, stream, ...(stream ? { stream_options: { include_usage: true } } : {}) })
        const reply = await response.text()
        assert.equal(response.status, 200, reply)
        assert.ok(!reply.includes(CANARY), 'the synthetic model echoed the canary; the leak search would be meaningless')
      }
    }
    // Two load samples after the last request: the stream has told what it would of them.
    const samplesBefore = events.text.split('event: load').length
    await waitFor('two load samples after the requests', async () => events.text.split('event: load').length >= samplesBefore + 2 ? true : undefined, 30_000)
    await events.stop()
    assert.ok(!events.text.includes(CANARY), 'the canary is in the dashboard\'s event stream')
    const dashboardStatus = await fetch(`${apiUrl}/dashboard/api/status`, { headers: { authorization: `Bearer ${apiKey}` } })
    assert.equal(dashboardStatus.status, 200)
    assert.ok(!(await dashboardStatus.text()).includes(CANARY), 'the canary is in the dashboard\'s status')
  })

  it('GET /metrics needs the API key and shows requests, latencies, tokens, load, members and the tunnel', async () => {
    assert.equal((await fetch(`${apiUrl}/metrics`)).status, 401)
    const response = await fetch(`${apiUrl}/metrics`, { headers: { authorization: `Bearer ${apiKey}` } })
    assert.equal(response.status, 200)
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain/)
    const text = await response.text()
    assert.ok(!text.includes(CANARY), 'the canary is in /metrics')
    assert.match(text, /llmesh_http_requests_total\{route="\/v1\/chat\/completions",method="POST",status="200"\} 2/)
    assert.match(text, /llmesh_http_requests_total\{route="\/v1\/completions",method="POST",status="200"\} 2/)
    assert.match(text, /llmesh_time_to_first_token_seconds_count 4/)
    assert.match(text, /llmesh_inter_token_latency_seconds_count [1-9]/)
    assert.match(text, /llmesh_completion_tokens_total [1-9]/)
    assert.match(text, /llmesh_prompt_tokens_total [1-9]/)
    for (const name of ['llmesh_decode_tokens_per_second', 'llmesh_queue_depth', 'llmesh_active_streams', 'llmesh_engine_slots', 'llmesh_engine_restarts_total', 'llmesh_member_state', 'llmesh_peer_rtt_seconds']) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'))
    }
    assert.match(text, /^llmesh_engine_slots 2$/m)
    // The coordinator's view of each worker's tunnel: bytes both ways, per-command time, time per token.
    const workerIds = (await status(coordinatorHome)).members.map(m => m.peerId)
    for (const worker of workerIds) {
      for (const direction of ['sent', 'received']) assert.match(text, new RegExp(`^llmesh_tunnel_bytes_total\\{worker="${worker}",direction="${direction}"\\} [1-9]`, 'm'))
      assert.match(text, new RegExp(`^llmesh_tunnel_command_seconds_total\\{worker="${worker}",command="get_tensor"\\} `, 'm'))
      for (const part of ['compute', 'transfer']) assert.match(text, new RegExp(`^llmesh_tunnel_token_seconds\\{worker="${worker}",part="${part}"\\} `, 'm'))
    }
    // Past the weights, llama-server's sessions crossed the coordinator in the native relay: the tunnel figures above came from its records.
    assert.match(text, /^llmesh_rpc_native_relays_total [1-9]/m)
    const alive = text.match(/^llmesh_member_state\{peer="[^"]+",role="worker",state="alive"\} 1$/gm) ?? []
    assert.equal(alive.length, 2)
  })

  it('the audit ledger holds one record per request, with counts and never content', async () => {
    // Through the running node's control socket, as a user would.
    const tail = async (): Promise<string> => await meshOk(coordinatorHome, ['audit', 'tail', '-n', '50', '--json'])
    const completed = (stdout: string): AuditRecord[] => (JSON.parse(stdout) as AuditRecord[]).filter(r => r.status === 200 && r.completionTokens > 0)
    const stdout = await waitFor('four completion records', async () => { const out = await tail(); return completed(out).length >= 4 ? out : undefined })
    assert.ok(!stdout.includes(CANARY), 'the canary is in the audit ledger')
    const completions = completed(stdout)
    assert.equal(completions.length, 4)
    for (const record of completions) {
      assert.equal(record.model, 'model')
      assert.ok(record.promptTokens > 0)
      assert.match(record.keyIdHash ?? '', /^[0-9a-f]{16}$/)
    }
    const verify = await mesh(coordinatorHome, ['audit', 'verify'])
    assert.equal(verify.code, 0, verify.stderr)
    assert.match(verify.stdout, /verified: \d+ records/)
  })

  it('mesh status shows the stage plan, load and per-worker timing in 100 columns, and every field in --json', async () => {
    const human = await mesh(coordinatorHome, ['status'])
    assert.equal(human.code, 0, human.stderr)
    for (const line of human.stdout.trimEnd().split('\n')) assert.ok(line.length <= STATUS_WIDTH, `${line.length} columns: ${line}`)
    assert.match(human.stdout, /^STAGE +NODE +LAYERS/m)
    // Both workers' stage rows end with their compute and transfer time per token.
    assert.equal(human.stdout.match(/^[12] .* [\d.]+ ms +[\d.]+ ms$/gm)?.length, 2, human.stdout)
    assert.match(human.stdout, /^load +[\d.]+ tokens\/s, \d+ queued, \d+ generating in 2 slots$/m)
    assert.match(human.stdout, /^privacy +on: the coordinator keeps layers? 0/m)
    // A worker shows its rpc-server and its view of the members, in 100 columns too.
    const worker = await mesh(homes[1], ['status'])
    assert.equal(worker.code, 0, worker.stderr)
    for (const line of worker.stdout.trimEnd().split('\n')) assert.ok(line.length <= STATUS_WIDTH, `${line.length} columns: ${line}`)
    assert.match(worker.stdout, /^rpc-server running \(0 restarts\)$/m)
    const json = JSON.parse((await meshOk(coordinatorHome, ['status', '--json']))) as Record<string, unknown> & { engine: Record<string, unknown>, members: Array<Record<string, unknown>> }
    for (const field of ['self', 'members', 'engine', 'warnings']) assert.ok(field in json, field)
    for (const field of ['state', 'kind', 'model', 'reason', 'plan', 'planTable', 'slots', 'apiUrl', 'load']) assert.ok(field in json.engine, field)
    assert.equal(json.engine.slots, 2)
    assert.equal((json.engine.plan as { parallel: number }).parallel, 2)
    for (const member of json.members) {
      const time = member.timePerToken as { computeMs: number, transferMs: number } | null
      assert.ok(time !== null && time.computeMs >= 0 && time.transferMs >= 0, `no time per token for worker ${String(member.peerId)}`)
      for (const field of ['peerId', 'role', 'state', 'addresses', 'transport', 'encryption', 'rttMs', 'lastSeenMs', 'llamaCppTag', 'memoryBytes', 'cpuCores', 'computeGflops', 'timePerToken']) assert.ok(field in member, field)
    }
  })

  it('mesh status --watch redraws in place at the interval', async () => {
    const child = spawn(process.execPath, [MESH_BIN, 'status', '--watch', '--interval', '1'], { env: { ...process.env, LLMESH_HOME: coordinatorHome }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
    try {
      await waitFor('three redraws', async () => out.split(HOME).length > 3 ? true : undefined, 20_000)
    } finally {
      child.kill('SIGINT')
    }
    const frames = out.split(HOME).filter(frame => frame.includes('STAGE'))
    assert.ok(frames.length >= 2, out)
    for (const line of frames[1].split('\n')) assert.ok(line.split(ESC).map((part, i) => i === 0 ? part : part.replace(/^\[[0-9]*[A-Z]/, '')).join('').length <= STATUS_WIDTH, line)
  })

  it('no log line of any node and no file in any data dir holds the canary, and debug logging logged more', async () => {
    const processes = [coordinator, ...workers]
    for (const p of processes) {
      const hit = p.lines.find(line => line.includes(CANARY))
      assert.equal(hit, undefined, `a log line holds the canary: ${String(hit)}`)
    }
    assert.ok(coordinator.lines.some(line => / debug +request \S+ POST \/v1\/chat\/completions 200 /.test(line)), 'no debug line for the requests')
    const canary = Buffer.from(CANARY)
    let searched = 0
    for (const home of homes) {
      for (const file of await filesUnder(home)) {
        const bytes = await readFile(file)
        assert.equal(bytes.indexOf(canary), -1, `${file} holds the canary`)
        searched++
      }
    }
    assert.ok(searched > 10, `only ${searched} files searched`)
  })

  it('every node, its llama-server and its rpc-server run with core dumps off', async () => {
    const coreLimit = async (pid: number): Promise<string | undefined> => /^Max core file size\s+(\S+)\s+(\S+)/m.exec(await readFile(`/proc/${pid}/limits`, 'utf8'))?.slice(1).join(' ')
    const children: Record<string, number> = {}
    for (const node of [coordinator, ...workers]) {
      assert.equal(await coreLimit(node.pid as number), '0 0', `mesh process ${node.pid as number}`)
      for (const pid of await descendantPids(node.pid as number)) {
        const name = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim()
        if (name !== 'llama-server' && name !== 'ggml-rpc-server') continue
        children[name] = (children[name] ?? 0) + 1
        assert.equal(await coreLimit(pid), '0 0', `${name} ${pid}`)
      }
    }
    assert.deepEqual(children, { 'llama-server': 1, 'ggml-rpc-server': 2 })
  })

  it('mesh status says whether --mlock locked a node\'s memory, and why the machine refused', async () => {
    const [plain, locking] = await Promise.all(homes.slice(1).map(async home => (await status(home)).memoryLock))
    assert.deepEqual(plain, { requested: false, state: 'off', reason: null })
    assert.equal(locking.requested, true)
    const rpcServer = (await descendantPids(workers[1].pid as number)).find(pid => readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'ggml-rpc-server')
    const lockedKiB = parseInt(/^VmLck:\s+(\d+)/m.exec(await readFile(`/proc/${rpcServer as number}/status`, 'utf8'))?.[1] ?? '0')
    if (locking.state === 'locked') {
      assert.ok(lockedKiB > 0, 'the locked rpc-server shows locked memory')
    } else {
      assert.equal(locking.state, 'not allowed')
      assert.match(locking.reason ?? '', /^rpc-server: /)
      assert.equal(lockedKiB, 0)
    }
  })

  it('generates as many requests at once as --parallel gives it slots', async () => {
    // Long enough replies that one slot would finish the first before the second began.
    const body = { model: 'model', prompt: 'Count with me:', max_tokens: 24, temperature: 0, logit_bias: await bannedTokenBias(model.path), stream: true }
    const [a, b] = (await Promise.all([streamCompletion(apiUrl, apiKey, body), streamCompletion(apiUrl, apiKey, body)])).map(({ arrivals }) => ({ firstText: arrivals[0], end: arrivals[arrivals.length - 1] }))
    // With one slot the second request's first text would come after the first one's last.
    assert.ok(Math.max(a.firstText, b.firstText) < Math.min(a.end, b.end), `first texts at ${a.firstText} and ${b.firstText}, last texts at ${a.end} and ${b.end} (ms)`)
  })

  it('a coordinator killed with SIGKILL under request load leaves a ledger that verifies', async () => {
    const body = { model: 'model', prompt: 'Count: one two three', max_tokens: 2, temperature: 0 }
    let stop = false
    let finished = 0
    const clients = Array.from({ length: 4 }, async () => {
      while (!stop) {
        await post('/v1/completions', body).then(async r => { await r.text(); finished++ }, () => { stop = true })
      }
    })
    await waitFor('requests under load', async () => finished >= 8 ? true : undefined, 60_000)
    await coordinator.stop('SIGKILL')
    stop = true
    await Promise.all(clients)
    const verify = await mesh(coordinatorHome, ['audit', 'verify', '--json'])
    assert.equal(verify.code, 0, verify.stdout + verify.stderr)
    const result = JSON.parse(verify.stdout) as { ok: boolean, records: number }
    assert.equal(result.ok, true)
    assert.ok(result.records >= 8, `${result.records} records`)
  })
})
