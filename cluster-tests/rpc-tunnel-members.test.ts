// The tunnel between real `mesh start` nodes (coordinator + two workers joined with invites):
// the coordinator tells each worker the message cap of its stage and serves completions through
// the tunnels (on their data channels), while a worker holding a valid worker certificate is
// refused when it opens a tunnel stream to another worker, tries to set that worker's cap (and
// so to have its key admitted to the data channel), or knocks on that data channel.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { readModelFacts } from '../engine/model-facts.js'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { dataDir } from '../node/data-dir.js'
import { MeshNode } from '../node/mesh-node.js'
import { createChannelIdentity } from '../protocols/rpc-tunnel/channel-identity.js'
import { messageCapFor, RPC_TUNNEL_PROTOCOL } from '../protocols/rpc-tunnel/index.js'
import { largestStageTensorBytes } from '../scheduler/index.js'
import { startServingCluster, type ServingCluster } from './fault-harness.js'
import { metricsText, status, TestCluster, waitFor } from './mesh-harness.js'
import { tryDataChannel, trySendHello, watchStream } from './rpc-session.js'

/** The value of a metric line `name{labels} value` (or `name value`) in Prometheus text; 0 when absent. */
function metric (text: string, name: string, labels = ''): number {
  const line = text.split('\n').find(l => l.startsWith(`${name}${labels === '' ? ' ' : `{${labels}} `}`))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1))
}

describe('the ggml-rpc tunnel between real mesh nodes', { timeout: 600_000 }, () => {
  const cluster = new TestCluster()
  let model: TestModel
  let serving: ServingCluster

  before(async () => {
    model = await writeTestModel()
    serving = await startServingCluster(cluster, { modelPath: model.path, workers: 2 })
  })

  after(async () => {
    await serving?.api.close()
    await cluster.cleanup()
    await model?.remove()
  })

  it('serves a completion through its workers, each capped at its own stage\'s largest tensor', async () => {
    const answer = await serving.api.complete('The quick brown fox', 8)
    assert.equal(answer.status, 200, answer.body)
    const facts = await readModelFacts(model.path)
    // The plan in force (the coordinator may have re-planned since the cluster formed), once its engine is up.
    const plan = await waitFor('a ready engine', async () => {
      const engine = (await status(serving.coordinator.home)).engine
      return engine?.state === 'ready' && engine.plan != null ? engine.plan : undefined
    })
    const stages = plan.stages.slice(1).filter(stage => stage.layerCount > 0)
    assert.ok(stages.length > 0, 'the plan puts layers on workers')
    for (const stage of stages) {
      const worker = serving.workers[serving.workerIds.indexOf(stage.nodeId)]
      const text = await metricsText(worker.home)
      assert.equal(metric(text, 'llmesh_rpc_message_cap_bytes'), messageCapFor(largestStageTensorBytes(facts, plan, stage)))
      assert.ok(metric(text, 'llmesh_rpc_request_bytes_total', 'command="set_tensor"') > 0, 'the completion went through this worker\'s bridge')
      assert.ok(metric(text, 'llmesh_rpc_sessions_total', 'carrier="data-channel"') > 0, 'llama-server\'s sessions took the data channel')
      assert.equal(metric(text, 'llmesh_rpc_refused_streams_total', 'reason="too-large"'), 0, 'no legitimate message was refused')
    }
  })

  it('refuses a tunnel stream and a cap from a worker with a valid certificate; the coordinator\'s tunnel keeps working', async () => {
    const [workerA, workerB] = serving.workers
    const [idA] = serving.workerIds
    const before = await metricsText(workerA.home)
    // Worker B, run in this process from its own data dir: its key and its worker certificate.
    await workerB.stop()
    const addrA = (await status(workerA.home)).self.addresses[0]
    const nodeB = await MeshNode.start({ dir: dataDir(workerB.home), role: 'worker', listen: ['/ip4/127.0.0.1/tcp/0'], peers: [addrA], encryption: 'noise', mdns: false, apiPort: 0, log: () => {} })
    try {
      await waitFor('worker B to be admitted by worker A', async () => nodeB.membership.isAuthenticated(idA) ? true : undefined)
      const stream = await nodeB.libp2p.dialProtocol(multiaddr(addrA), RPC_TUNNEL_PROTOCOL)
      const seen = watchStream(stream)
      trySendHello(seen)
      assert.ok(await seen.closed !== undefined, 'worker A resets the stream')
      assert.equal(seen.bytes().length, 0, 'nothing came back from worker A\'s rpc-server')
      // A cap well inside A's ceiling: only B's role can make A refuse it.
      // The cap exchange also offers B's data channel key: refused with the cap, it is never admitted.
      const forgedCap = 4096
      await assert.rejects(nodeB.libp2p.services.rpcTunnel.openListener(peerIdFromString(idA), { maxMessageBytes: forgedCap }))
      const channelPort = (await status(workerA.home)).self.tunnelDataChannelPort
      assert.ok(channelPort !== null, 'worker A has a data channel')
      assert.equal(await tryDataChannel(channelPort, await createChannelIdentity()), 0, 'a key worker A was not told gets nothing back')

      const after = await metricsText(workerA.home)
      assert.equal(metric(after, 'llmesh_rpc_refused_streams_total', 'reason="not-coordinator"'), metric(before, 'llmesh_rpc_refused_streams_total', 'reason="not-coordinator"') + 3)
      assert.notEqual(metric(after, 'llmesh_rpc_message_cap_bytes'), forgedCap, 'worker B could not set worker A\'s cap')

      // The coordinator re-plans around B's restart; its streams to A still pass.
      let last = ''
      await waitFor('a completion through worker A after the refusals', async () => {
        const answer = await serving.api.complete('The quick brown fox', 8)
        const engine = (await status(serving.coordinator.home)).engine
        last = `answer ${answer.status} ${answer.body.slice(0, 300)}; engine ${engine?.state ?? 'none'}, plan ${engine?.planTable ?? 'none'}`
        return answer.status === 200 && engine?.plan?.stages.some(s => s.nodeId === idA && s.layerCount > 0) === true ? true : undefined
      }, 180_000).catch((err: Error) => {
        throw new Error(`${err.message}; last seen: ${last}\nthe coordinator's log:\n${serving.coordinator.lines.slice(-25).join('\n')}\nworker A's log:\n${workerA.lines.slice(-25).join('\n')}`)
      })
    } finally {
      await nodeB.stop()
    }
  })
})
