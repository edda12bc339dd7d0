// The worker's side of `mesh bench tunnel` and `mesh bench cluster`, run in a worker thread so
// that it has an event loop of its own, as a worker on another machine would: a libp2p peer whose
// tunnel bridge admits only the bench's coordinator, in front of an rpc-server (the bench's
// process) or of an rpc-server stand-in that the plain relay reaches too.
import { connect, type Socket } from 'node:net'
import { createServer as createTlsServer } from 'node:tls'
import { parentPort, Worker, workerData } from 'node:worker_threads'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { createChannelIdentity } from '../../protocols/rpc-tunnel/channel-identity.js'
import { DEFAULT_MESSAGE_CAP_BYTES } from '../../protocols/rpc-tunnel/index.js'
import { startTunnelNode, type LoopbackTransports, type TunnelNode } from '../tunnel-node.js'
import { listenOnLoopback, relayHandler, type LoopbackServer } from './loopback-server.js'
import { startRpcStandIn } from './rpc-stand-in.js'
import type { PeerId } from '@libp2p/interface'

/** What the worker peer bridges to; by default a stand-in of its own with the default message cap and no tensor cache. */
export interface FarEndOptions {
  /** a real rpc-server's port on 127.0.0.1 */
  rpcServerPort?: number
  /** the most bytes one ggml-rpc message may carry */
  messageCapCeiling?: number
  /** the worker's tensor cache */
  tensorCache?: { dir: string, maxBytes: number }
  /** also relay TLS connections to the rpc-server (or stand-in), for the bench's bare TLS pipe */
  tlsPipe?: boolean
}

interface FarEndInit extends FarEndOptions {
  role: 'tunnel-bench-far-end'
  /** the only peer the bridge admits */
  coordinator: string
  transports: LoopbackTransports
}

/** Where the far end listens. */
export interface FarEnd {
  /** the worker peer's multiaddrs (with its peer id) */
  addrs: string[]
  /** the port on 127.0.0.1 of the rpc-server (or stand-in) behind the bridge */
  rpcPort: number
  /** with `tlsPipe`: the port of the TLS relay to it */
  tlsPipePort?: number
  stop: () => Promise<void>
}

/** Starts the far end in a worker thread; `coordinator` is the peer id its bridge admits. */
export async function startFarEnd (coordinator: string, transports: LoopbackTransports, options: FarEndOptions = {}): Promise<FarEnd> {
  const init: FarEndInit = { ...options, role: 'tunnel-bench-far-end', coordinator, transports }
  const worker = new Worker(new URL(import.meta.url), { workerData: init })
  try {
    const ready = await new Promise<{ addrs: string[], rpcPort: number, tlsPipePort?: number }>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
      worker.once('exit', code => { reject(new Error(`the bench's worker thread exited with code ${code} before it was ready`)) })
    })
    return {
      ...ready,
      stop: async () => {
        const exited = new Promise(resolve => worker.once('exit', resolve))
        worker.postMessage('stop')
        await exited
      }
    }
  } catch (err) {
    await worker.terminate()
    throw err
  }
}

/**
 * Connects `coordinator` to the far end over `transport` alone, telling it no other address, so
 * that the tunnel has that connection only; returns the far end's peer id.
 */
export async function connectToFarEnd (coordinator: TunnelNode, farEnd: FarEnd, transport: 'tcp' | 'quic'): Promise<PeerId> {
  const addr = farEnd.addrs.find(a => a.includes(transport === 'quic' ? '/quic-v1' : '/tcp/'))
  if (addr === undefined) throw new Error(`the worker peer does not listen on ${transport}`)
  await coordinator.dial(multiaddr(addr))
  return peerIdFromString(addr.slice(addr.lastIndexOf('/p2p/') + '/p2p/'.length))
}

/** A TLS 1.3 server (a throwaway key) relaying each connection to `port` on 127.0.0.1. */
async function startTlsRelay (port: number): Promise<LoopbackServer> {
  const { key, cert } = await createChannelIdentity()
  const sockets = new Set<Socket>()
  const server = createTlsServer({ key, cert, minVersion: 'TLSv1.3', noDelay: true }, relayHandler(() => connect({ host: '127.0.0.1', port, noDelay: true }), sockets))
  return await listenOnLoopback(server, sockets)
}

async function runFarEnd (init: FarEndInit, port: NonNullable<typeof parentPort>): Promise<void> {
  const standIn = init.rpcServerPort === undefined ? await startRpcStandIn() : undefined
  const rpcPort = init.rpcServerPort ?? standIn?.port ?? 0
  const { tensorCache } = init
  const node = await startTunnelNode({
    bridge: {
      authorize: peer => peer.toString() === init.coordinator,
      rpcServerPort: () => rpcPort,
      messageCapCeiling: () => init.messageCapCeiling ?? DEFAULT_MESSAGE_CAP_BYTES,
      tensorCache: tensorCache === undefined ? undefined : { dir: tensorCache.dir, maxBytes: () => tensorCache.maxBytes }
    }
  }, init.transports)
  const tlsPipe = init.tlsPipe === true ? await startTlsRelay(rpcPort) : undefined
  port.once('message', () => {
    void (async () => {
      await tlsPipe?.close()
      await node.stop()
      await standIn?.close()
      port.close()
    })()
  })
  port.postMessage({ addrs: node.getMultiaddrs().map(String), rpcPort, tlsPipePort: tlsPipe?.port })
}

const init = workerData as FarEndInit | null
if (parentPort !== null && init?.role === 'tunnel-bench-far-end') void runFarEnd(init, parentPort)
