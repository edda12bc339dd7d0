// The native relay on its own, over real sockets on 127.0.0.1: a TLS session as the worker's end
// of a data channel, relayed to a plain connection to a stand-in for rpc-server that this test
// drives byte by byte.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { Registry } from 'prom-client'
import { nativeSockets } from '../../node/native-socket.js'
import { createChannelIdentity } from './channel-identity.js'
import { UnexpectedRpcResponseError, type RpcTunnelError } from './errors.js'
import { FIXED_REQUEST_BYTES, RpcCommand } from './ggml-rpc.js'
import { RpcTunnelMetrics } from './metrics.js'
import { relayWorkerSession } from './native-relay.js'
import { NativeSocketEnd } from './native-socket/native-socket-end.js'
import { rpcRequest, rpcResponse } from './test-support/frames.js'

const sockets = nativeSockets()
// The machines llmesh is tested on have a C compiler and node's headers: the addon must build there.
if (sockets.addon === undefined) throw new Error(`the native socket addon cannot be built: ${sockets.why}`)
const addon = sockets.addon

const MiB = 1024 * 1024

async function listen (server: Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return (server.address() as AddressInfo).port
}

/** Bytes a socket received, and a way to wait until there are at least some. */
function collect (onData: (listener: (parts: Uint8Array[]) => void) => void): { bytes: () => Buffer, atLeast: (n: number) => Promise<void> } {
  const chunks: Uint8Array[] = []
  let received = 0
  onData(parts => {
    for (const part of parts) {
      chunks.push(Buffer.from(part))
      received += part.byteLength
    }
  })
  return {
    bytes: () => Buffer.concat(chunks),
    atLeast: async n => {
      const deadline = Date.now() + 20_000
      while (received < n) {
        if (Date.now() > deadline) throw new Error(`received ${received} of ${n} bytes`)
        await new Promise(resolve => setTimeout(resolve, 5))
      }
    }
  }
}

describe('the native relay on a worker', () => {
  let tlsServer: Server
  let rpcServer: Server
  let rpcConnections: Socket[]
  let tlsPort: number
  let rpcPort: number
  const serverContext = (async () => { const id = await createChannelIdentity(); return addon.createContext(id.key, id.cert, true) })()
  const clientContext = (async () => { const id = await createChannelIdentity(); return addon.createContext(id.key, id.cert, false) })()

  before(async () => {
    tlsServer = createServer({ pauseOnConnect: true })
    tlsPort = await listen(tlsServer)
    rpcConnections = []
    rpcServer = createServer(socket => { rpcConnections.push(socket) })
    rpcPort = await listen(rpcServer)
  })

  after(async () => {
    for (const socket of rpcConnections) socket.destroy()
    tlsServer.close()
    rpcServer.close()
  })

  /** A relayed session: the coordinator's TLS end, the stand-in's socket, and how the relay ended. */
  async function relayedSession (maxMessageBytes: number): Promise<{ coordinator: NativeSocketEnd, rpc: Socket, failed: Promise<RpcTunnelError>, registry: Registry }> {
    const accepted = once(tlsServer, 'connection') as Promise<[Socket]>
    const client = connect({ host: '127.0.0.1', port: tlsPort }).pause()
    await once(client, 'connect')
    const [serverSocket] = await accepted
    const [worker, coordinator] = await Promise.all([
      NativeSocketEnd.handshake(addon, await serverContext, serverSocket, true, 5000),
      NativeSocketEnd.handshake(addon, await clientContext, client, false, 5000)
    ])
    const rpcAccepted = new Promise<Socket>(resolve => { rpcServer.once('connection', resolve) })
    const toRpc = connect({ host: '127.0.0.1', port: rpcPort }).pause()
    await once(toRpc, 'connect')
    const local = NativeSocketEnd.local(addon, toRpc, false)
    const rpc = await rpcAccepted
    const registry = new Registry()
    const metrics = new RpcTunnelMetrics(registry)
    const failed = new Promise<RpcTunnelError>(resolve => {
      assert.ok(relayWorkerSession(worker, local, {
        maxMessageBytes,
        readTimeoutMs: 10_000,
        metrics,
        fail: err => {
          resolve(err)
          worker.abort(err)
          local.abort(err)
        }
      }))
    })
    return { coordinator, rpc, failed, registry }
  }

  it('carries large requests and answers whole and in order past a stalled reader, and times each command', async () => {
    const { coordinator, rpc, registry } = await relayedSession(64 * MiB)
    try {
      const answers = collect(listener => {
        coordinator.onData(parts => {
          listener(parts)
          coordinator.release(parts.reduce((sum, part) => sum + part.byteLength, 0))
        })
      })
      const graph = randomBytes(40 * MiB)
      const read = rpcRequest(RpcCommand.GET_TENSOR, FIXED_REQUEST_BYTES.get(RpcCommand.GET_TENSOR) ?? 0)
      const requests = Buffer.concat([rpcRequest(RpcCommand.GRAPH_COMPUTE, graph), read])
      // More than the sockets' buffers hold: the relay stops reading the data channel while
      // rpc-server does not read, and goes on once it does.
      for (let offset = 0; offset < requests.byteLength; offset += MiB) coordinator.send(requests.subarray(offset, offset + MiB))
      await new Promise(resolve => setTimeout(resolve, 300))
      // The kernel's buffers hold a few MiB each way; the relay holds a little more.
      assert.ok(coordinator.bufferedBytes > 4 * MiB, `the coordinator could send all but ${coordinator.bufferedBytes} bytes to a worker whose rpc-server reads nothing`)
      const seen = collect(listener => { rpc.on('data', chunk => { listener([chunk]) }) })
      rpc.resume()
      await seen.atLeast(requests.byteLength)
      assert.ok(seen.bytes().equals(requests), 'rpc-server got every request byte, in order')

      // An answer larger than the buffers too, to a coordinator that reads it all.
      const answer = Buffer.concat([rpcResponse(0), randomBytes(24 * MiB)])
      answer.writeBigUInt64LE(BigInt(answer.byteLength - 8), 0)
      rpc.write(answer)
      await answers.atLeast(answer.byteLength)
      assert.ok(answers.bytes().equals(answer), 'the coordinator got the answer whole')

      // A scrape takes the relay's records from native memory.
      const text = await registry.metrics()
      assert.match(text, new RegExp(`llmesh_rpc_request_bytes_total\\{command="graph_compute"\\} ${graph.byteLength}\\n`))
      assert.match(text, new RegExp(`llmesh_rpc_response_bytes_total\\{command="get_tensor"\\} ${answer.byteLength - 8}\\n`))
      assert.match(text, /llmesh_rpc_native_relays_total 1\n/)
    } finally {
      coordinator.destroy()
      rpc.destroy()
    }
  })

  it('refuses an answer that no request asked for', async () => {
    const { coordinator, rpc, failed } = await relayedSession(MiB)
    try {
      const closed = new Promise<Error | undefined>(resolve => { coordinator.onClose(resolve) })
      coordinator.onData(() => {})
      rpc.resume()
      rpc.write(rpcResponse(4))
      assert.ok(await failed instanceof UnexpectedRpcResponseError)
      // The worker's end went away: the coordinator sees its session closed.
      await closed
    } finally {
      coordinator.destroy()
      rpc.destroy()
    }
  })
})
