import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { after, describe, it } from 'node:test'
import { MESH_BIN } from '../tools/test-support/run-mesh.js'
import { meshOk, status, TestCluster, waitFor } from './mesh-harness.js'
import { createNamespacePair, deleteNamespacePair, type NamespacePair } from './netns.js'

describe('mesh discovery with mDNS', { timeout: 120_000 }, () => {
  const cluster = new TestCluster()
  let pair: NamespacePair | undefined
  after(async () => {
    await cluster.cleanup()
    if (pair !== undefined) await deleteNamespacePair(pair)
  })

  it('two nodes in two network namespaces find each other with no static peers', async (t) => {
    pair = await createNamespacePair(`m${process.pid % 10000}`)
    if (pair === undefined) {
      t.skip('"ip netns add" was refused on this machine (needs root or CAP_NET_ADMIN)')
      return
    }
    const [nsA, nsB] = pair.names
    const [addrA, addrB] = pair.addresses
    const coordinatorHome = await cluster.home('mdns-coordinator')
    await meshOk(coordinatorHome, ['init'])
    const coordinator = cluster.start(coordinatorHome, ['--role', 'coordinator', '--listen', `/ip4/${addrA}/tcp/9090`], nsA)
    await coordinator.listenAddr()

    const workerHome = await cluster.home('mdns-worker')
    const invite = (await meshOk(coordinatorHome, ['token'])).trim()
    await promisify(execFile)('ip', ['netns', 'exec', nsB, process.execPath, MESH_BIN, 'join', invite], { env: { ...process.env, LLMESH_HOME: workerHome }, timeout: 60_000 })
    // The invite left the coordinator's address as a static peer; remove it so that only
    // mDNS can bring the two nodes together.
    const configPath = join(workerHome, 'cluster.json')
    const config = JSON.parse(await readFile(configPath, 'utf8')) as { coordinatorAddrs: string[] }
    await writeFile(configPath, JSON.stringify({ ...config, coordinatorAddrs: [] }))

    const worker = cluster.start(workerHome, ['--role', 'worker', '--listen', `/ip4/${addrB}/tcp/9090`], nsB)
    await worker.listenAddr()
    const workerId = (await status(workerHome)).self.peerId
    const member = await waitFor('the coordinator to see the worker through mDNS', async () => {
      const m = (await status(coordinatorHome)).members.find(m => m.peerId === workerId && m.state === 'alive')
      return m
    }, 30_000)
    assert.ok(member.addresses.some(a => a.includes(addrB)), `connected over ${member.addresses.join(', ')}`)
  })
})
