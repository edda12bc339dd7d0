import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { after, before, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { shortPeerId } from '../node/mesh-node.js'
import { formThreeNodeCluster, mesh, meshOk, metricsText, status, TestCluster, waitFor, type MeshProcess } from './mesh-harness.js'

const PROBE = fileURLToPath(new URL('./fixtures/certless-probe.js', import.meta.url))

async function runProbe (addr: string, mode: 'silent' | 'hello' | 'bad-frames', clusterId = ''): Promise<Record<string, unknown>> {
  const { stdout } = await promisify(execFile)(process.execPath, [PROBE, addr, mode, clusterId], { timeout: 60_000 })
  return JSON.parse(stdout) as Record<string, unknown>
}

describe('mesh membership on 127.0.0.1 over TCP', { timeout: 240_000 }, () => {
  const cluster = new TestCluster()
  let coordinator: MeshProcess
  let workers: MeshProcess[]
  let coordinatorAddr: string

  before(async () => {
    ({ coordinator, workers, coordinatorAddr } = await formThreeNodeCluster(cluster, 'tcp'))
  })
  after(async () => { await cluster.cleanup() })

  it('three nodes form a cluster from invites and the coordinator lists two live workers', async () => {
    const result = await mesh(coordinator.home, ['status', '--json'])
    assert.equal(result.code, 0, result.stderr)
    const report = JSON.parse(result.stdout) as { self: { role: string }, members: Array<Record<string, unknown>> }
    assert.equal(report.self.role, 'coordinator')
    const live = report.members.filter(m => m.state === 'alive' && m.role === 'worker')
    assert.equal(live.length, 2)
    for (const m of live) {
      assert.equal(typeof m.peerId, 'string')
      assert.equal(typeof m.lastSeenMs, 'number')
      assert.equal(typeof m.llamaCppTag, 'string')
      assert.equal(m.transport, 'tcp')
    }
  })

  it('refuses a reused invite with a clear error', async () => {
    const invite = (await meshOk(coordinator.home, ['token'])).trim()
    await meshOk(await cluster.home('first'), ['join', invite])
    const again = await mesh(await cluster.home('second'), ['join', invite])
    assert.equal(again.code, 1)
    assert.match(again.stderr, /^mesh: the invite has already been used/)
  })

  it('refuses an expired invite with a clear error', async () => {
    const invite = (await meshOk(coordinator.home, ['token', '--ttl', '1s'])).trim()
    await delay(1500)
    const result = await mesh(await cluster.home('late'), ['join', invite])
    assert.equal(result.code, 1)
    assert.match(result.stderr, /^mesh: the invite expired at .*ask for a new one/)
  })

  it('answers no llmesh protocol for a peer without a certificate and disconnects it', async () => {
    const report = await runProbe(coordinatorAddr, 'silent')
    assert.equal(report.connected, true)
    for (const [protocol, outcome] of Object.entries(report.answers as Record<string, string>)) {
      assert.notEqual(outcome, 'answered', `${protocol} answered an unauthenticated peer`)
    }
    assert.equal(typeof report.closedAfterMs, 'number', 'the coordinator kept the connection open')
  })

  it('refuses a certificate-less handshake and disconnects the peer', async () => {
    const report = await runProbe(coordinatorAddr, 'hello')
    assert.match(String(report.refusal), /AuthRefusedError: this node belongs to cluster/)
    assert.equal(typeof report.closedAfterMs, 'number')
  })

  it('refuses a rogue node with its own cluster CA and keeps it out', async () => {
    const rogueHome = await cluster.home('rogue')
    await meshOk(rogueHome, ['init'])
    const rogue = cluster.start(rogueHome, ['--role', 'coordinator', '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--peer', coordinatorAddr])
    await rogue.waitForLine(/refused us: this node belongs to cluster/)
    await waitFor('the refusal counted', async () => /llmesh_refused_peers_total\{reason="foreign-cluster"\} [1-9]/.test(await metricsText(coordinator.home)) ? true : undefined)
    await delay(3000)
    const rogueId = (await status(rogueHome)).self.peerId
    assert.equal((await status(coordinator.home)).members.some(m => m.peerId === rogueId), false)
    assert.equal((await status(rogueHome)).members.length, 0)
    await rogue.stop()
  })

  it('closes streams with malformed frames or forged certificates, counts them, and keeps serving members', async () => {
    const clusterId = (await status(coordinator.home)).self.clusterId
    const { outcomes } = await runProbe(coordinatorAddr, 'bad-frames', clusterId) as { outcomes: Record<string, string> }
    for (const name of ['wrong magic', 'unknown type', 'oversized payload', 'malformed JSON', 'truncated frame']) {
      assert.match(outcomes[name], /^(closed without an answer|reset)/, `${name}: ${outcomes[name]}`)
    }
    assert.match(outcomes['invalid signature'], /^closed after a \d+-byte answer/, 'a forged certificate gets a refusal')
    const metrics = await metricsText(coordinator.home)
    // A truncated frame is seen as such when the sender's half-close arrives, otherwise
    // as a stalled handshake; both close the stream and count.
    for (const reason of ['magic', 'type', 'oversized', 'schema', '(truncated|timeout)']) {
      assert.match(metrics, new RegExp(`llmesh_rejected_frames_total\\{protocol="/llmesh/auth/1.0.0",reason="${reason}"\\} [1-9]`), `no metric for ${reason}`)
    }
    assert.match(metrics, /llmesh_refused_peers_total\{reason="signature"\} [1-9]/)
    const live = (await status(coordinator.home)).members.filter(m => m.state === 'alive')
    assert.equal(live.length, 2, 'the coordinator stopped serving its workers')
  })

  it('declares a SIGKILLed worker dead within 6 s and lets it rejoin after a restart', async () => {
    const victim = workers[0]
    const peerId = (await status(victim.home)).self.peerId
    const killedAt = Date.now()
    await victim.stop('SIGKILL')
    const { at } = await coordinator.waitForLine(new RegExp(`member ${shortPeerId(peerId).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} declared dead`), 15_000)
    const detectionMs = at - killedAt
    console.log(`SIGKILL detection time: ${detectionMs} ms`)
    assert.ok(detectionMs < 6000, `detection took ${detectionMs} ms`)

    const restarted = cluster.start(victim.home, ['--role', 'worker', '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns'])
    workers[0] = restarted
    await waitFor('the restarted worker alive again', async () => {
      const member = (await status(coordinator.home)).members.find(m => m.peerId === peerId)
      return member?.state === 'alive' ? true : undefined
    })
  })

  it('disconnects a revoked member within 5 s and keeps it out', async () => {
    const victim = workers[1]
    const peerId = (await status(victim.home)).self.peerId
    assert.match(await meshOk(coordinator.home, ['revoke', peerId]), /^revoked /)
    // The command returns once the coordinator applied the revocation.
    const revokedAt = Date.now()
    await waitFor('the revoked member disconnected', async () => {
      const member = (await status(coordinator.home)).members.find(m => m.peerId === peerId)
      return member?.state === 'revoked' && member.addresses.length === 0 ? true : undefined
    }, 5000)
    console.log(`revocation took effect after ${Date.now() - revokedAt} ms`)
    // The signed revocation list reaches the other members through gossip.
    await waitFor('the other worker to learn the revocation', async () => {
      const seen = (await status(workers[0].home)).members.find(m => m.peerId === peerId)
      return seen?.state === 'revoked' ? true : undefined
    }, 10_000)
    // The revoked worker keeps dialing its static peer; the gater must keep refusing it.
    await delay(4000)
    const member = (await status(coordinator.home)).members.find(m => m.peerId === peerId)
    assert.equal(member?.state, 'revoked')
    assert.deepEqual(member?.addresses, [])
    const invite = (await meshOk(coordinator.home, ['token'])).trim()
    await victim.stop()
    const rejoin = await mesh(victim.home, ['join', '--force', invite])
    assert.equal(rejoin.code, 1)
    assert.match(rejoin.stderr, /^mesh: the coordinator closed the connection without answering .*revoked/)
  })
})
