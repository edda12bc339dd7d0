import assert from 'node:assert/strict'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { after, before, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { shortPeerId } from '../node/mesh-node.js'
import { HEARTBEAT_TOPIC, MEMBERSHIP_TOPIC } from '../node/member-gossip.js'
import { AUTH_PROTOCOL } from '../protocols/auth/constants.js'
import { formThreeNodeCluster, meshOk, metricsText, status, TestCluster, waitFor, type MeshProcess } from './mesh-harness.js'

const FIXTURES = new URL('./fixtures/', import.meta.url)
const WORKER_ARGS = ['--role', 'worker', '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns']

/** A fixture process that prints one JSON line per event or per answer. */
class FixtureProcess {
  readonly lines: Array<Record<string, unknown>> = []
  private readonly child: ChildProcess
  private partial = ''

  constructor (fixture: string, args: string[]) {
    this.child = spawn(process.execPath, [fileURLToPath(new URL(fixture, FIXTURES)), ...args], { stdio: ['pipe', 'pipe', 'inherit'] })
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (this.partial + chunk).split('\n')
      this.partial = parts.pop() ?? ''
      for (const part of parts) this.lines.push(JSON.parse(part) as Record<string, unknown>)
    })
  }

  /** The first line (from index `from` on) that `match` accepts. */
  async next (match: (line: Record<string, unknown>) => boolean, from = 0, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    return waitFor('a line from the fixture', async () => this.lines.slice(from).find(match), timeoutMs)
  }

  /** Sends a command (insider) and returns its answer's result; throws its error. */
  async command (line: string, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    const from = this.lines.length
    this.child.stdin?.write(line + '\n')
    const answer = await this.next(l => 'ok' in l, from, timeoutMs)
    if (answer.ok !== true) throw new Error(`insider "${line}": ${String(answer.error)}`)
    return answer.result as Record<string, unknown>
  }

  stop (): void {
    this.child.kill('SIGKILL')
  }
}

/** The value of one Prometheus series in a node's metrics, 0 when absent. */
async function sample (home: string, series: string): Promise<number> {
  const line = (await metricsText(home)).split('\n').find(l => l.startsWith(series + ' '))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

/** A stranger's report of a member reaching it: a dial, a stream, a dial of the address it named. */
function contact (line: Record<string, unknown>): boolean {
  return line.event === 'inbound' || line.event === 'stream' || line.event === 'bait'
}

async function waitForSample (home: string, series: string, atLeast: number): Promise<void> {
  await waitFor(`${series} >= ${atLeast}`, async () => await sample(home, series) >= atLeast ? true : undefined, 20_000)
}

describe('membership hardening against a stranger and an insider, on 127.0.0.1', { timeout: 300_000 }, () => {
  const cluster = new TestCluster()
  const fixtures: FixtureProcess[] = []
  let coordinator: MeshProcess
  let workers: MeshProcess[]
  let coordinatorAddr: string
  let stranger: FixtureProcess
  let insider: FixtureProcess
  let w1: string
  let w2StartedAt: number

  before(async () => {
    ({ coordinator, workers, coordinatorAddr } = await formThreeNodeCluster(cluster, 'tcp'))
    w1 = (await status(workers[0].home)).self.peerId
  })
  after(async () => {
    for (const fixture of fixtures) fixture.stop()
    await cluster.cleanup()
  })

  it('never dials, queries or gossips to a stranger that connected once, and counts the refusal', async () => {
    stranger = new FixtureProcess('stranger.js', [coordinatorAddr])
    fixtures.push(stranger)
    await stranger.next(l => l.event === 'ready')
    await stranger.next(l => l.event === 'closed', 0, 20_000)
    // Members used to re-dial a stranger in their routing table about every 5 s.
    await delay(12_000)
    assert.deepEqual(stranger.lines.filter(contact), [], 'a member contacted the stranger')
    assert.ok(await sample(coordinator.home, 'llmesh_refused_peers_total{reason="unauthenticated-outbound"}') >= 1, 'the DHT and gossipsub refusals were not counted')
    assert.ok(await sample(coordinator.home, 'llmesh_refused_peers_total{reason="no-handshake"}') >= 1)
  })

  it('refuses a captured leave and heartbeat replayed to a member that restarted since (its gossipsub caches are empty)', async () => {
    const home = await cluster.home('insider')
    await meshOk(home, ['join', (await meshOk(coordinator.home, ['token', '--role', 'worker'])).trim()])
    insider = new FixtureProcess('insider.js', [home])
    fixtures.push(insider)
    await insider.command(`connect ${coordinatorAddr}`)
    await insider.command(`connect ${await workers[0].listenAddr()}`)
    await insider.command(`capture ${w1}`)
    await insider.command(`keep-record ${w1}`)
    const leave = insider.command(`capture-leave ${w1}`)
    await workers[0].stop()
    await leave
    workers[0] = cluster.start(workers[0].home, WORKER_ARGS)
    await workers[1].stop()
    // Restarted with the stranger as a static peer, as a misled operator might (see below).
    const strangerAddr = String((await stranger.next(l => l.event === 'ready')).addr)
    w2StartedAt = Date.now()
    workers[1] = cluster.start(workers[1].home, [...WORKER_ARGS, '--peer', strangerAddr])
    const target = workers[1]
    await waitFor('the restarted worker to see the other one alive', async () => (await status(target.home)).members.find(m => m.peerId === w1)?.state === 'alive' ? true : undefined)
    const stale = async (topic: string): Promise<number> => sample(target.home, `llmesh_rejected_gossip_total{topic="${topic}",reason="stale"}`)
    const before = { heartbeat: await stale(HEARTBEAT_TOPIC), leave: await stale(MEMBERSHIP_TOPIC) }
    assert.equal((await insider.command(`replay ${await target.listenAddr()} ${w1}`)).sent, 2)
    await waitFor('both replays counted as stale', async () =>
      await stale(HEARTBEAT_TOPIC) > before.heartbeat && await stale(MEMBERSHIP_TOPIC) > before.leave ? true : undefined, 20_000)
    await delay(1000)
    const left = new RegExp(`member ${shortPeerId(w1).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} left`)
    assert.equal(target.lines.some(l => left.test(l)), false, 'the replayed leave was taken for a real one')
    assert.equal((await status(target.home)).members.find(m => m.peerId === w1)?.state, 'alive')
  })

  it('keeps the newest capability record when a member puts back an older, genuinely signed one', async () => {
    // The worker restarted above and published a new record as it came back.
    const result = await insider.command(`put-back ${w1}`)
    console.log(`stale record put back: ${JSON.stringify(result)}`)
    const after = result.after as number[]
    assert.ok(after.length > 0, 'no member answered the lookup')
    assert.ok(after.every(seq => seq >= (result.newer as number)), `the old record (${String(result.old)}) came back: ${after.join(', ')}`)
    await waitForSample(coordinator.home, 'llmesh_rejected_dht_records_total{reason="stale"}', 1)
  })

  // After the replays: gossipsub rightly penalises a peer whose messages are rejected.
  it('refuses a member\'s heartbeat that carries another member\'s certificate', async () => {
    await insider.command(`borrow ${w1}`)
    await waitForSample(coordinator.home, `llmesh_rejected_gossip_total{topic="${HEARTBEAT_TOPIC}",reason="wrong-peer"}`, 1)
  })

  it('dials a stranger named as a static peer once, refuses it like an inbound stranger, and no other member dials it after restarts', async () => {
    const w2 = (await status(workers[1].home)).self.peerId
    // A static peer that failed used to be dialled again within seconds, each time sent this
    // node's certificate.
    await delay(Math.max(0, w2StartedAt + 20_000 - Date.now()))
    const fromW2 = stranger.lines.filter(l => contact(l) && l.peer === w2)
    assert.deepEqual(fromW2.map(l => `${String(l.event)} ${String(l.protocol ?? '')}`.trim()), ['inbound', `stream ${AUTH_PROTOCOL}`])
    assert.deepEqual(stranger.lines.filter(l => contact(l) && l.peer !== w2), [])
    // Counted under whatever ended the handshake: its timeout, or the stream's, under load.
    const refusals = (await metricsText(workers[1].home)).split('\n').filter(l => l.startsWith('llmesh_refused_peers_total{'))
    console.log(`refusals on the worker: ${refusals.join(', ')}`)
    assert.ok(refusals.some(l => !l.endsWith(' 0')), 'the worker counted no refusal')
  })

  // Last: it makes the coordinator refuse redemptions from 127.0.0.1 for a minute.
  it('slows down invite guessing from one address, counts every failure and warns on the coordinator', async () => {
    const clusterId = (await status(coordinator.home)).self.clusterId
    const probe = fileURLToPath(new URL('certless-probe.js', FIXTURES))
    const { stdout } = await promisify(execFile)(process.execPath, [probe, coordinatorAddr, 'guess', clusterId, '14'], { timeout: 120_000 })
    const answers = (JSON.parse(stdout) as { answers: string[] }).answers
    assert.ok(answers.every(a => a.startsWith('AuthRefusedError')), answers.join('\n'))
    assert.match(answers[0], /the invite is not known/)
    assert.match(answers[answers.length - 1], /too many failed invite redemptions from this address/)
    assert.ok(await sample(coordinator.home, 'llmesh_failed_invite_redemptions_total{reason="unknown"}') >= 10)
    assert.ok(await sample(coordinator.home, 'llmesh_failed_invite_redemptions_total{reason="rate-limited"}') >= 1)
    await coordinator.waitForLine(/failed invite redemptions from 127\.0\.0\.1/, 5000)
  })
})
