import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { after, before, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { MESH_BIN } from '../tools/test-support/run-mesh.js'
import { meshOk, TestCluster } from './mesh-harness.js'
import { createNamespacePair, deleteNamespacePair, type NamespacePair } from './netns.js'

const run = promisify(execFile)
const PROBE = fileURLToPath(new URL('./fixtures/certless-probe.js', import.meta.url))
const FLOOD = 30

// On 127.0.0.1 every node allows any number of connections (several nodes share the host in
// tests); from another host, libp2p's per-host limits apply. Two namespaces make a LAN.
describe('connection limits a stranger on the LAN meets', { timeout: 180_000 }, () => {
  const cluster = new TestCluster()
  let pair: NamespacePair | undefined

  before(async () => { pair = await createNamespacePair('lim') })
  after(async () => {
    await cluster.cleanup()
    if (pair !== undefined) await deleteNamespacePair(pair)
  })

  it('cuts a flood of connections from one host to a few a second, and then admits a joiner from that host', async (t) => {
    if (pair === undefined) {
      t.skip('"ip netns add" was refused on this machine (needs root or CAP_NET_ADMIN)')
      return
    }
    const [coordinatorNs, lanNs] = pair.names
    const home = await cluster.home('lan-coordinator')
    await meshOk(home, ['init'])
    const coordinator = cluster.start(home, ['--role', 'coordinator', '--listen', `/ip4/${pair.addresses[0]}/tcp/0`, '--no-mdns'], coordinatorNs)
    const addr = await coordinator.listenAddr()
    const { stdout } = await run('ip', ['netns', 'exec', lanNs, process.execPath, PROBE, addr, 'flood', '', String(FLOOD)], { timeout: 60_000 })
    const { opened, failed } = JSON.parse(stdout) as { opened: number, failed: number }
    console.log(`${FLOOD} connections at once from one LAN host: ${opened} opened, ${failed} refused`)
    assert.ok(failed > 0, 'the coordinator took every connection of the flood')
    assert.ok(opened > 0, 'the coordinator refused every connection, also the first ones')
    // The limit is a rate: a moment later a joiner from the same host gets in.
    await delay(2000)
    const invite = (await meshOk(home, ['token', '--role', 'worker'])).trim()
    const joinerHome = await cluster.home('lan-joiner')
    const joined = await run('ip', ['netns', 'exec', lanNs, process.execPath, MESH_BIN, 'join', invite], { env: { ...process.env, LLMESH_HOME: joinerHome }, timeout: 60_000 })
    assert.match(joined.stdout, /^joined cluster /)
  })
})
