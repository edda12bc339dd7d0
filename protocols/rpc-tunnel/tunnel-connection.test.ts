import '../../node/polyfill.js'
import assert from 'node:assert/strict'
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { after, afterEach, describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { RpcBenchClient, startRpcStandIn, tokenStepRequest } from '../../tools/bench/rpc-stand-in.js'
import { startTunnelNode, type TunnelNode } from '../../tools/tunnel-node.js'
import { DEFAULT_MESSAGE_CAP_BYTES, RPC_TUNNEL_PROTOCOL } from './index.js'
import { TCP_DIAL_MS } from './tunnel-connection.js'

// A coordinator and a worker peer on 127.0.0.1, connected over QUIC (as a peer listening on both may be dialled),
// with a ggml-rpc stand-in behind the worker's bridge: which connection carries the tunnel.
describe('the tunnel stream\'s connection', { timeout: 60_000 }, () => {
  const rpc = startRpcStandIn()
  let nodes: TunnelNode[] = []
  let blackHole: Server | undefined
  const held: Socket[] = []

  afterEach(async () => {
    await Promise.all(nodes.map(async node => { await node.stop() }))
    nodes = []
    for (const socket of held.splice(0)) socket.destroy()
    await new Promise(resolve => { if (blackHole === undefined) resolve(undefined); else blackHole.close(resolve) })
    blackHole = undefined
  })
  after(async () => { await (await rpc).close() })

  /** Starts both peers, connects them over QUIC and tells the coordinator `workerAddrs` (identify's job in a mesh node). */
  async function pair (workerAddrs: (worker: TunnelNode) => string[]): Promise<{ coordinator: TunnelNode, worker: TunnelNode }> {
    const { port } = await rpc
    const coordinator = await startTunnelNode({}, 'tcp+quic')
    const worker = await startTunnelNode({
      bridge: { authorize: peer => peer.equals(coordinator.peerId), rpcServerPort: () => port, messageCapCeiling: () => DEFAULT_MESSAGE_CAP_BYTES }
    }, 'tcp+quic')
    nodes = [coordinator, worker]
    await coordinator.dial(worker.getMultiaddrs().filter(addr => addr.toString().includes('/quic-v1'))[0])
    await coordinator.peerStore.merge(worker.peerId, { multiaddrs: workerAddrs(worker).map(a => multiaddr(a)) })
    return { coordinator, worker }
  }

  /** Runs a decode step through a new listener; returns the transport of the connection that carried it. */
  async function session (coordinator: TunnelNode, worker: TunnelNode): Promise<string> {
    const endpoint = await coordinator.services.rpcTunnel.openListener(worker.peerId)
    const client = await RpcBenchClient.open(Number(endpoint.split(':')[1]))
    try {
      await client.exchange([tokenStepRequest(11 * 1024, 4096)], 8 + 4096)
      const carrier = coordinator.getConnections(worker.peerId).find(c => c.streams.some(s => s.protocol === RPC_TUNNEL_PROTOCOL))
      assert.ok(carrier !== undefined)
      return carrier.remoteAddr.toString().includes('/quic') ? 'quic' : 'tcp'
    } finally {
      client.close()
      await coordinator.services.rpcTunnel.closeListeners()
    }
  }

  it('goes over TCP when the worker listens on it, though the peers met over QUIC', async () => {
    const { coordinator, worker } = await pair(worker => worker.getMultiaddrs().map(String))
    assert.equal(await session(coordinator, worker), 'tcp')
  })

  it('goes over QUIC when the worker\'s TCP address never answers, and does not wait for TCP again', async () => {
    // A TCP port that accepts and never speaks: the Noise handshake waits for ever.
    blackHole = createServer(socket => { held.push(socket) })
    await new Promise<void>(resolve => blackHole?.listen(0, '127.0.0.1', resolve))
    const silent = `/ip4/127.0.0.1/tcp/${(blackHole.address() as AddressInfo).port}`
    const { coordinator, worker } = await pair(() => [silent])
    const first = Date.now()
    assert.equal(await session(coordinator, worker), 'quic')
    assert.ok(Date.now() - first >= TCP_DIAL_MS, 'the TCP dial was tried first')
    const second = Date.now()
    assert.equal(await session(coordinator, worker), 'quic')
    assert.ok(Date.now() - second < TCP_DIAL_MS, 'the failed TCP dial is remembered')
  })
})
