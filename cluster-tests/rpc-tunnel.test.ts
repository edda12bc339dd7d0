// The ggml-rpc tunnel end to end, with real libp2p nodes (TCP + Noise + yamux on 127.0.0.1)
// and the TLS data channel they set up, a real rpc-server behind the worker bridge and real
// llama-servers in front of it.
import '../node/polyfill.js'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect as connectTcp } from 'node:net'
import { connect as connectTls, type TLSSocket } from 'node:tls'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { PeerId } from '@libp2p/interface'
import { startLlamaServer } from '../engine/llama-server.js'
import { loadLocalEngine } from '../engine/local-engine.js'
import { readModelFacts } from '../engine/model-facts.js'
import { startRpcServer, type RpcServer } from '../engine/rpc-server.js'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { MESSAGE_MARGIN_BYTES, RPC_CAP_PROTOCOL } from '../protocols/rpc-tunnel/constants.js'
import { DEFAULT_MESSAGE_CAP_BYTES, messageCapFor, RPC_TUNNEL_PROTOCOL } from '../protocols/rpc-tunnel/index.js'
import { largestStageTensorBytes, planStages, renderLlamaServerArgs, type ModelFacts, type StagePlan } from '../scheduler/index.js'
import { sessionCounts, startTunnelNode, type TunnelNode } from '../tools/tunnel-node.js'
import { RpcCommand } from '../protocols/rpc-tunnel/ggml-rpc.js'
import { rpcRequest } from '../protocols/rpc-tunnel/test-support/frames.js'
import { tryDataChannel, trySendHello, watchStream } from './rpc-session.js'
import { createChannelIdentity } from '../protocols/rpc-tunnel/channel-identity.js'
import { sendCapMessage } from '../protocols/rpc-tunnel/message-cap-exchange.js'

const PROMPT = 'The quick brown fox jumps over the lazy dog.'
// About 400 tokens (of the test model's 512-token context): read as one large micro-batch,
// it sends the worker's stage the largest attention mask and hidden state of the plan.
const LONG_PROMPT = Array(14).fill(PROMPT).join(' ')
/** SET_TENSOR carries the tensor's 296-byte description and an 8-byte offset before the data. */
const SET_TENSOR_HEADER_BYTES = 296 + 8
const GiB = 1024 ** 3
async function until (condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

/** Size u64 + payload of rpc-server's answers: HELLO gets 4 + 24 bytes, DEVICE_COUNT 4. */
const HELLO_RESPONSE_BYTES = 8 + 28
const DEVICE_COUNT_RESPONSE_BYTES = 8 + 4
/**
 * A GRAPH_COMPUTE of an empty graph (device 0, no nodes, no tensors): rpc-server computes
 * nothing, and the worker bridge takes the weights as loaded and relays the session natively.
 */
const EMPTY_GRAPH = rpcRequest(RpcCommand.GRAPH_COMPUTE, 12)

/** A metric's value in `node`'s registry, summed over `labels` where given (0 when absent). */
async function metricValue (node: TunnelNode, name: string, labels: Record<string, string> = {}): Promise<number> {
  const values = (await node.services.rpcTunnel.registry.getSingleMetric(name)?.get())?.values ?? []
  return values.filter(v => Object.entries(labels).every(([key, value]) => v.labels[key] === value)).reduce((sum, v) => sum + v.value, 0)
}

// Needs the tools `mesh setup` builds; findLlamaCppTools() says so when they are missing.
describe('ggml-rpc tunnel over libp2p', { timeout: 120_000 }, () => {
  let model: TestModel
  let dataDir: string
  let rpcServer: RpcServer
  let coordinator: TunnelNode
  let worker: TunnelNode
  let otherMember: TunnelNode
  let bannedTokens: number[]
  let facts: ModelFacts
  let plan: StagePlan
  const roles = new Map<string, 'coordinator' | 'worker'>()
  /** What the worker's bridge wrote to the worker's own log, "level message". */
  const workerLog: string[] = []

  before(async () => {
    model = await writeTestModel()
    dataDir = await mkdtemp(join(tmpdir(), 'llmesh-rpc-tunnel-test-'))
    // A random-weight model strings lone UTF-8 bytes together, which llama-server refuses to send.
    const local = await loadLocalEngine({ modelPath: model.path })
    bannedTokens = local.partialCharacterTokens()
    await local.dispose()
    facts = await readModelFacts(model.path)
    // Layers on the coordinator and on the worker, as a cluster of two would have them.
    plan = planStages({ model: facts, coordinator: { id: 'coordinator', offeredBytes: GiB, speed: 1 }, workers: [{ id: 'worker', offeredBytes: GiB, speed: 1 }], contextSize: 512 })
    rpcServer = await startRpcServer({ dataDir, threads: 1 })
    coordinator = await startTunnelNode()
    otherMember = await startTunnelNode()
    worker = await startTunnelNode({
      bridge: {
        authorize: (peer: PeerId) => roles.get(peer.toString()) === 'coordinator',
        rpcServerPort: () => rpcServer.port,
        messageCapCeiling: () => messageCapFor(GiB),
        nodeLog: (level, message) => { workerLog.push(`${level} ${message}`) }
      },
      idleReadTimeoutMs: 2000
    })
    roles.set(coordinator.peerId.toString(), 'coordinator')
    roles.set(otherMember.peerId.toString(), 'worker')
    await coordinator.dial(worker.getMultiaddrs()[0])
    await otherMember.dial(worker.getMultiaddrs()[0])
  })

  after(async () => {
    await Promise.all([coordinator?.stop(), worker?.stop(), otherMember?.stop()])
    await rpcServer?.dispose()
    await model?.remove()
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
  })

  async function greedyTokens (rpcEndpoint: string): Promise<number[]> {
    const server = await startLlamaServer({ modelPath: model.path, threads: 1, extraArgs: renderLlamaServerArgs(plan, { worker: rpcEndpoint }) })
    try {
      const tokens: number[] = []
      for await (const piece of server.generate(LONG_PROMPT, { maxTokens: 1, bannedTokens })) void piece
      for await (const piece of server.generate(PROMPT, { maxTokens: 32, ignoreEos: true, bannedTokens })) tokens.push(piece.token)
      return tokens
    } finally {
      await server.dispose()
    }
  }

  /** A raw session from `from` to the worker: HELLO, then DEVICE_COUNT; returns the device count. */
  async function deviceCount (from: TunnelNode): Promise<number> {
    const stream = await from.dialProtocol(worker.peerId, RPC_TUNNEL_PROTOCOL)
    const seen = watchStream(stream)
    seen.send(rpcRequest(RpcCommand.HELLO, 24))
    seen.send(rpcRequest(RpcCommand.DEVICE_COUNT, 0))
    await until(() => seen.bytes().length >= HELLO_RESPONSE_BYTES + DEVICE_COUNT_RESPONSE_BYTES, 'the DEVICE_COUNT response')
    const bytes = seen.bytes()
    assert.equal(bytes[8], 6, 'rpc-server speaks ggml-rpc protocol 6')
    await stream.close()
    return new DataView(bytes.buffer).getUint32(HELLO_RESPONSE_BYTES + 8, true)
  }

  /** A raw session through a coordinator listener at `endpoint`: HELLO, then DEVICE_COUNT; returns the device count. */
  async function deviceCountAt (endpoint: string): Promise<number> {
    const socket = connectTcp({ host: '127.0.0.1', port: Number(endpoint.split(':')[1]) })
    try {
      await once(socket, 'connect')
      socket.write(rpcRequest(RpcCommand.HELLO, 24))
      socket.write(rpcRequest(RpcCommand.DEVICE_COUNT, 0))
      const chunks: Buffer[] = []
      for await (const chunk of socket) {
        chunks.push(chunk as Buffer)
        if (Buffer.concat(chunks).byteLength >= HELLO_RESPONSE_BYTES + DEVICE_COUNT_RESPONSE_BYTES) break
      }
      const bytes = Buffer.concat(chunks)
      return bytes.readUInt32LE(HELLO_RESPONSE_BYTES + 8)
    } finally {
      socket.destroy()
    }
  }

  it('gives llama-server the same greedy tokens as --rpc pointed at rpc-server directly, within the plan\'s message cap', async () => {
    const direct = await greedyTokens(`127.0.0.1:${rpcServer.port}`)
    assert.equal(worker.services.rpcTunnel.messageCap(coordinator.peerId), DEFAULT_MESSAGE_CAP_BYTES, 'a coordinator that set no cap gets the default')
    const stageTensorBytes = largestStageTensorBytes(facts, plan, plan.stages[1])
    const endpoint = await coordinator.services.rpcTunnel.openListener(worker.peerId, { maxMessageBytes: messageCapFor(stageTensorBytes) })
    assert.match(endpoint, /^127\.0\.0\.1:\d+$/)
    assert.equal(worker.services.rpcTunnel.messageCap(coordinator.peerId), messageCapFor(stageTensorBytes), 'the worker applies the cap before llama-server connects')
    const before = await sessionCounts(coordinator)
    const relayed = { coordinator: await metricValue(coordinator, 'llmesh_rpc_native_relays_total'), worker: await metricValue(worker, 'llmesh_rpc_native_relays_total') }
    const tunnelled = await greedyTokens(endpoint)
    await coordinator.services.rpcTunnel.closeListeners()
    assert.equal(direct.length, 32)
    assert.deepEqual(tunnelled, direct)
    // The plan's cap exchange set up the data channel, and llama-server's session took it.
    const after = await sessionCounts(coordinator)
    assert.ok((after['data-channel'] ?? 0) > (before['data-channel'] ?? 0), 'the session went over the data channel')
    assert.equal(after.libp2p ?? 0, before.libp2p ?? 0, 'no session fell back to a tunnel stream')
    // Past the weights, decode steps crossed both ends in the native relay.
    assert.ok(await metricValue(coordinator, 'llmesh_rpc_native_relays_total') > relayed.coordinator, 'the coordinator relayed llama-server\'s session natively')
    assert.ok(await metricValue(worker, 'llmesh_rpc_native_relays_total') > relayed.worker, 'the worker relayed the session natively')
    // The session really went through the bridge, which counted it per command.
    const registry = worker.services.rpcTunnel.registry
    const metrics = await registry.getSingleMetricAsString('llmesh_rpc_request_bytes_total')
    assert.match(metrics, /command="graph_compute"} [1-9]/)
    assert.match(metrics, /command="set_tensor"} [1-9]/)
    // The cap's parts hold: no tensor upload exceeds the stage's largest tensor, no graph the margin.
    const largest = new Map((await registry.getSingleMetric('llmesh_rpc_largest_request_bytes')?.get())?.values.map(v => [v.labels.command, v.value]))
    assert.ok((largest.get('set_tensor') ?? 0) > 0)
    assert.ok((largest.get('set_tensor') ?? Infinity) <= stageTensorBytes + SET_TENSOR_HEADER_BYTES, `set_tensor of ${largest.get('set_tensor')} bytes exceeds the stage's largest tensor (${stageTensorBytes}) and its header`)
    assert.ok((largest.get('graph_compute') ?? Infinity) <= MESSAGE_MARGIN_BYTES, 'the graph fits the margin')
  })

  it('refuses a message cap above what the worker offers, and keeps the cap in force', async () => {
    const before = worker.services.rpcTunnel.messageCap(coordinator.peerId)
    await assert.rejects(coordinator.services.rpcTunnel.openListener(worker.peerId, { maxMessageBytes: messageCapFor(GiB) + 1 }), /refused the plan's ggml-rpc message cap/)
    assert.equal(worker.services.rpcTunnel.messageCap(coordinator.peerId), before)
  })

  /** True once the worker's log has a warning that a tunnel stream from `peer` ended, for a reason matching `why`. */
  function workerLogged (peer: TunnelNode, why: RegExp, what = 'tunnel stream'): boolean {
    return workerLog.some(line => line.startsWith(`warn ${what} from ${peer.peerId.toString()} `) && why.test(line))
  }

  for (const [what, badRequest, reason] of [
    ['an unknown command byte', Uint8Array.of(0xc8), /closed by this worker: ggml-rpc command 200 is refused/],
    ['a length of 2^40', rpcRequest(RpcCommand.SET_TENSOR, 0, 2n ** 40n), /closed by this worker: ggml-rpc set_tensor announces 1099511627776 bytes/]
  ] as const) {
    it(`closes a tunnel stream that sends ${what}; rpc-server keeps running and the next session works`, async () => {
      const pid = rpcServer.pid
      const stream = await coordinator.dialProtocol(worker.peerId, RPC_TUNNEL_PROTOCOL)
      const seen = watchStream(stream)
      seen.send(rpcRequest(RpcCommand.HELLO, 24))
      await until(() => seen.bytes().length >= HELLO_RESPONSE_BYTES, 'the HELLO response')
      seen.send(badRequest)
      assert.ok(await seen.closed !== undefined, 'the bridge resets the stream')
      assert.equal(rpcServer.pid, pid)
      assert.ok(!rpcServer.recentOutput.some(line => /Unknown command|Failed to allocate/.test(line)), 'the bad request never reached rpc-server')
      await until(() => workerLogged(coordinator, reason), 'the worker\'s log to say why it closed the stream')
      assert.equal(await deviceCount(coordinator), 1)
      assert.equal(rpcServer.pid, pid)
    })
  }

  /**
   * A raw session on the worker's data channel as the coordinator would open it (with a key the
   * coordinator named in a cap exchange of its own), past HELLO and the weights (EMPTY_GRAPH),
   * its DEVICE_COUNT answered: the worker relays it natively from here on.
   */
  async function dataChannelPastWeights (): Promise<{ socket: TLSSocket, closed: Promise<void> }> {
    const key = await createChannelIdentity()
    const capStream = await coordinator.dialProtocol(worker.peerId, RPC_CAP_PROTOCOL)
    await sendCapMessage(capStream, worker.peerId, 1024 * 1024, key.sha256, AbortSignal.timeout(10_000))
    const port = worker.services.rpcTunnel.dataChannelPort
    assert.ok(port !== undefined, 'the worker listens for a data channel')
    const socket = connectTls({ host: '127.0.0.1', port, minVersion: 'TLSv1.3', rejectUnauthorized: false, ...key })
    const closed = new Promise<void>(resolve => { socket.once('close', () => { resolve() }) })
    socket.on('error', () => {})
    await once(socket, 'secureConnect')
    let received = 0
    socket.on('data', (chunk: Buffer) => { received += chunk.byteLength })
    socket.write(Buffer.concat([rpcRequest(RpcCommand.HELLO, 24), EMPTY_GRAPH, rpcRequest(RpcCommand.DEVICE_COUNT, 0)]))
    await until(() => received >= HELLO_RESPONSE_BYTES + DEVICE_COUNT_RESPONSE_BYTES, 'the DEVICE_COUNT answer after the graph')
    return { socket, closed }
  }

  it('relays a data channel session past its weights natively, timing its commands and refusing what the bridge refuses', async () => {
    const pid = rpcServer.pid
    const relays = await metricValue(worker, 'llmesh_rpc_native_relays_total')
    const counted = await metricValue(worker, 'llmesh_rpc_request_bytes_total', { command: 'graph_compute' })
    for (const [what, badRequest, reason] of [
      ['an unknown command byte', Uint8Array.of(0xc8), /closed by this worker: ggml-rpc command 200 is refused/],
      ['a second HELLO', rpcRequest(RpcCommand.HELLO, 24), /closed by this worker: ggml-rpc command 14 is refused: HELLO may only open a session/],
      ['a length over the cap', rpcRequest(RpcCommand.SET_TENSOR, 0, 2n ** 40n), /closed by this worker: ggml-rpc set_tensor announces 1099511627776 bytes, more than the 1048576-byte cap/],
      ['a fixed-size request of another size', rpcRequest(RpcCommand.FREE_BUFFER, 9), /closed by this worker: ggml-rpc free_buffer must carry exactly 8 bytes, got 9/]
    ] as const) {
      const { socket, closed } = await dataChannelPastWeights()
      // In two parts: the relay judges the command byte as it comes, the rest of the header once whole.
      socket.write(badRequest.subarray(0, 1))
      if (badRequest.byteLength > 1) setTimeout(() => { socket.write(badRequest.subarray(1)) }, 50)
      await closed
      await until(() => workerLogged(coordinator, reason, 'tunnel data channel session'), `the worker's log to say why it closed the session that sent ${what}`)
      assert.ok(!rpcServer.recentOutput.some(line => /Unknown command|Failed to allocate/.test(line)), `${what} never reached rpc-server`)
    }
    assert.equal(rpcServer.pid, pid)
    assert.equal(await metricValue(worker, 'llmesh_rpc_native_relays_total'), relays + 4, 'each session was relayed natively once past its graph')
    // The relay's timings reach the metrics, the graph's (before the relay) with DEVICE_COUNT's (through it).
    assert.equal(await metricValue(worker, 'llmesh_rpc_request_bytes_total', { command: 'graph_compute' }), counted + 4 * 12)
    assert.equal(await deviceCount(coordinator), 1, 'the next session works')
  })

  it('closes a natively relayed session that stalls part-way through a request', async () => {
    const relays = await metricValue(worker, 'llmesh_rpc_native_relays_total')
    const { socket, closed } = await dataChannelPastWeights()
    socket.write(rpcRequest(RpcCommand.DEVICE_COUNT, 0).subarray(0, 5))
    await closed
    await until(() => workerLogged(coordinator, /closed by this worker: a ggml-rpc message stalled for more than 2000 ms/, 'tunnel data channel session'), 'the worker\'s log to say why it closed the session')
    assert.equal(await metricValue(worker, 'llmesh_rpc_native_relays_total'), relays + 1)
    assert.equal(await deviceCount(coordinator), 1)
  })

  it('closes a tunnel stream that stalls part-way through a request', async () => {
    const stream = await coordinator.dialProtocol(worker.peerId, RPC_TUNNEL_PROTOCOL)
    const seen = watchStream(stream)
    seen.send(rpcRequest(RpcCommand.HELLO, 24).subarray(0, 5))
    assert.ok(await seen.closed !== undefined, 'the bridge resets the stream after its idle read timeout')
    await until(() => workerLogged(coordinator, /closed by this worker: a ggml-rpc message stalled for more than 2000 ms/), 'the worker\'s log to say why it closed the stream')
    assert.equal(await deviceCount(coordinator), 1)
  })

  it('refuses a tunnel stream from a member that is not the coordinator', async () => {
    const accepted = rpcServer.recentOutput.filter(line => line.includes('Accepted client connection')).length
    const stream = await otherMember.dialProtocol(worker.peerId, RPC_TUNNEL_PROTOCOL)
    const seen = watchStream(stream)
    trySendHello(seen)
    assert.ok(await seen.closed !== undefined, 'the bridge resets the stream')
    assert.equal(seen.bytes().length, 0, 'nothing came back from rpc-server')
    assert.equal(rpcServer.recentOutput.filter(line => line.includes('Accepted client connection')).length, accepted, 'rpc-server saw no connection')
    const refused = await worker.services.rpcTunnel.registry.getSingleMetricAsString('llmesh_rpc_refused_streams_total')
    assert.match(refused, /reason="not-coordinator"} 1/)
    await until(() => workerLogged(otherMember, /refused: peer \S+ is not the cluster's coordinator/), 'the worker\'s log to say why it refused the stream')
  })

  it('refuses, on the data channel, a client whose key no coordinator named, a client without a certificate, and a member that offers its key in a cap exchange', async () => {
    const port = worker.services.rpcTunnel.dataChannelPort
    assert.ok(port !== undefined, 'the worker listens for a data channel')
    const accepted = rpcServer.recentOutput.filter(line => line.includes('Accepted client connection')).length
    const refusedBefore = await worker.services.rpcTunnel.registry.getSingleMetricAsString('llmesh_rpc_refused_streams_total')
    const count = (text: string): number => Number(/reason="not-coordinator"} (\d+)/.exec(text)?.[1] ?? 0)

    assert.equal(await tryDataChannel(port, await createChannelIdentity()), 0, 'a stranger\'s key gets nothing back')
    assert.equal(await tryDataChannel(port), 0, 'a client without a certificate gets nothing back')
    // A member with a valid certificate but not the coordinator offers its key as a coordinator
    // would: the worker refuses the exchange by the member's role, and so never admits the key.
    const memberKey = await createChannelIdentity()
    const capStream = await otherMember.dialProtocol(worker.peerId, RPC_CAP_PROTOCOL)
    await assert.rejects(sendCapMessage(capStream, worker.peerId, 4096, memberKey.sha256, AbortSignal.timeout(10_000)))
    assert.equal(await tryDataChannel(port, memberKey), 0, 'the member\'s key gets nothing back')

    assert.equal(rpcServer.recentOutput.filter(line => line.includes('Accepted client connection')).length, accepted, 'rpc-server saw no connection')
    const refusedAfter = await worker.services.rpcTunnel.registry.getSingleMetricAsString('llmesh_rpc_refused_streams_total')
    assert.ok(count(refusedAfter) >= count(refusedBefore) + 3, 'each refusal is counted')
    // The coordinator's own sessions still work.
    const endpoint = await coordinator.services.rpcTunnel.openListener(worker.peerId, { maxMessageBytes: DEFAULT_MESSAGE_CAP_BYTES })
    try {
      assert.equal(await deviceCountAt(endpoint), 1)
    } finally {
      await coordinator.services.rpcTunnel.closeListeners()
    }
  })

  it('carries sessions in tunnel streams to a worker that has no data channel', async () => {
    const plainWorker = await startTunnelNode({
      dataChannel: false,
      bridge: { authorize: peer => peer.equals(coordinator.peerId), rpcServerPort: () => rpcServer.port, messageCapCeiling: () => messageCapFor(GiB) }
    })
    try {
      assert.equal(plainWorker.services.rpcTunnel.dataChannelPort, undefined)
      await coordinator.dial(plainWorker.getMultiaddrs()[0])
      const before = await sessionCounts(coordinator)
      const endpoint = await coordinator.services.rpcTunnel.openListener(plainWorker.peerId, { maxMessageBytes: DEFAULT_MESSAGE_CAP_BYTES })
      assert.equal(await deviceCountAt(endpoint), 1)
      const after = await sessionCounts(coordinator)
      assert.equal((after.libp2p ?? 0) - (before.libp2p ?? 0), 1, 'the session went in a tunnel stream')
      assert.equal(after['data-channel'] ?? 0, before['data-channel'] ?? 0)
    } finally {
      await coordinator.services.rpcTunnel.closeListeners()
      await plainWorker.stop()
    }
  })

  it('falls back to a tunnel stream when a restarted worker\'s old channel is gone, and takes its new channel at once', async () => {
    const restarting = await startTunnelNode({
      bridge: { authorize: peer => peer.equals(coordinator.peerId), rpcServerPort: () => rpcServer.port, messageCapCeiling: () => messageCapFor(GiB) }
    })
    try {
      await coordinator.dial(restarting.getMultiaddrs()[0])
      const before = await coordinator.services.rpcTunnel.openListener(restarting.peerId, { maxMessageBytes: DEFAULT_MESSAGE_CAP_BYTES })
      const oldPort = restarting.services.rpcTunnel.dataChannelPort
      // A restart: the same peer, a new channel key, and (its listen addresses being port 0) new ports.
      await restarting.stop()
      await restarting.start()
      assert.notEqual(restarting.services.rpcTunnel.dataChannelPort, oldPort)
      await coordinator.dial(restarting.getMultiaddrs()[0])
      const counted = await sessionCounts(coordinator)
      assert.equal(await deviceCountAt(before), 1, 'the listener opened before the restart still serves, in a tunnel stream')
      const fellBack = await sessionCounts(coordinator)
      assert.equal((fellBack.libp2p ?? 0) - (counted.libp2p ?? 0), 1)
      // The next plan's cap exchange names the new channel, which is tried at once.
      const after = await coordinator.services.rpcTunnel.openListener(restarting.peerId, { maxMessageBytes: DEFAULT_MESSAGE_CAP_BYTES })
      assert.equal(await deviceCountAt(after), 1)
      const renewed = await sessionCounts(coordinator)
      assert.equal((renewed['data-channel'] ?? 0) - (fellBack['data-channel'] ?? 0), 1, 'the new channel carried the session')
    } finally {
      await coordinator.services.rpcTunnel.closeListeners()
      await restarting.stop()
    }
  })
})
