import { connect, createServer, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { connect as connectTls } from 'node:tls'
import { setTimeout as sleep } from 'node:timers/promises'
import { median } from '../../engine/benchmark.js'
import { DEFAULT_MESSAGE_CAP_BYTES } from '../../protocols/rpc-tunnel/index.js'
import { sessionCarriers, startTunnelNode, type TunnelCarrier, type TunnelNode } from '../tunnel-node.js'
import { connectToFarEnd, startFarEnd, type FarEnd } from './tunnel-bench-far-end.js'
import { listenOnLoopback, relayHandler, type LoopbackServer } from './loopback-server.js'
import { RpcBenchClient, setTensorRequest, tokenStepRequest, getTensorRequest } from './rpc-stand-in.js'

/** Result of `mesh bench tunnel`; the JSON field names are a public contract (issue 23). */
export interface TunnelBenchResult {
  /** median round trip of a decode step's messages through the tunnel, after a pause, in µs */
  tunnel_rtt_p50_us: number
  /** the same through a plain node:net relay */
  relay_rtt_p50_us: number
  /** tunnel_rtt_p50_us / relay_rtt_p50_us */
  ratio: number
  /** SET_TENSOR bytes through the tunnel per second, median of the runs, in MB/s */
  bulk_mb_per_s: number
  relay_bulk_mb_per_s: number
  /** the libp2p transport between the peers: "tcp" or "quic" (the tunnel's control path, and its data path for the libp2p carrier) */
  transport: 'tcp' | 'quic'
  /** what carried the sessions: "data-channel" (TLS beside libp2p) or "libp2p" (tunnel streams) */
  carrier: string
  /**
   * the same round trip through a bare TLS 1.3 pipe of two forwarding hops (a relay, Node's
   * TLS, a relay in the far end's thread) without the tunnel's inspection: the floor of a tunnel
   * that stands in for rpc-server on one side and encrypts with Node's TLS sockets (llmesh's
   * data channel runs its TLS natively where it can, so it may come in under this)
   */
  tls_pipe_rtt_p50_us: number
  tls_pipe_bulk_mb_per_s: number
}

export interface TunnelBenchOptions {
  /** round trips per side */
  samples: number
  /** bytes of SET_TENSOR data per bulk run */
  bulkBytes: number
  /** bulk runs per side; the median rate is reported */
  bulkRuns: number
  /** the libp2p transport the peers connect over */
  transport: 'tcp' | 'quic'
  /** what carries the sessions; a data channel that cannot be used falls back to libp2p, and the result says so */
  carrier: TunnelCarrier
}

/** llama-server's traffic to a worker per decoded token (a 16-layer 1024-wide model): GRAPH_COMPUTE and GET_TENSOR out, the hidden state back. */
export const STEP_REQUEST_BYTES = 11 * 1024
export const STEP_RESPONSE_BYTES = 4 * 1024
/** Idle time before each round trip: a worker waits this long for its stage while other stages compute. */
export const PAUSE_MS = 10
/** SET_TENSOR data per message in the bulk runs: a mid-sized weight matrix. */
const TENSOR_BYTES = 4 * 1024 * 1024
const WARMUP_ROUND_TRIPS = 20

/** A plain relay: each connection on 127.0.0.1 is piped to `port`, as a Node.js TCP forwarder would. */
async function startRelay (port: number): Promise<LoopbackServer> {
  const sockets = new Set<Socket>()
  return await listenOnLoopback(createServer({ noDelay: true }, relayHandler(() => connect({ host: '127.0.0.1', port, noDelay: true }), sockets)), sockets)
}

/**
 * The least an encrypted tunnel of llmesh's shape built on Node's TLS sockets can cost: a plain
 * relay whose upstream is TLS 1.3 to the far end's thread, which relays it to the same
 * rpc-server stand-in (two forwarding hops and TLS, as the tunnel has, but no inspection, flow
 * control or metrics).
 */
async function startTlsPipe (tlsPort: number): Promise<LoopbackServer> {
  const sockets = new Set<Socket>()
  // Bench only, on 127.0.0.1: the far end's certificate is not checked, the tunnel's are.
  const upstream = (): Socket => connectTls({ host: '127.0.0.1', port: tlsPort, minVersion: 'TLSv1.3', rejectUnauthorized: false }).setNoDelay(true)
  return await listenOnLoopback(createServer({ noDelay: true }, relayHandler(upstream, sockets)), sockets)
}

async function roundTrip (client: RpcBenchClient, step: Buffer): Promise<number> {
  const start = performance.now()
  await client.exchange([step], 8 + STEP_RESPONSE_BYTES)
  return (performance.now() - start) * 1000
}

// Bytes of SET_TENSOR requests, then a GET_TENSOR whose answer says that all of them arrived.
async function bulkRun (client: RpcBenchClient, bytes: number): Promise<number> {
  const messages: Buffer[] = []
  for (let left = bytes; left > 0; left -= TENSOR_BYTES) messages.push(setTensorRequest(Math.min(left, TENSOR_BYTES)))
  const sent = messages.reduce((sum, m) => sum + m.byteLength, 0)
  const start = performance.now()
  await client.exchange([...messages, getTensorRequest(8)], 8 + 8)
  return sent / 1e6 / ((performance.now() - start) / 1000)
}

/** The three paths measured, in the order of the first round; each round rotates it. */
const SIDES = ['tunnel', 'relay', 'tlsPipe'] as const
type Side = typeof SIDES[number]

/** The sides in round `i`'s order: each comes first as often as the others, so that load hits all alike. */
function rotated (i: number): Side[] {
  return SIDES.map((_, k) => SIDES[(i + k) % SIDES.length])
}

/**
 * Measures the ggml-rpc tunnel between two libp2p peers on 127.0.0.1 (the worker's in a thread
 * of its own, its bridge admitting only the coordinator) against a plain node:net relay to the
 * same rpc-server stand-in, and against a bare pipe of two hops through Node's TLS (the floor of a
 * tunnel of that shape on Node's TLS sockets), the sides taking turns sample by sample so that load hits all alike.
 */
export async function benchTunnel (options: TunnelBenchOptions): Promise<TunnelBenchResult> {
  const transports = options.transport === 'quic' ? 'tcp+quic' : 'tcp'
  const stops: Array<() => Promise<void>> = []
  const clients: RpcBenchClient[] = []
  try {
    const coordinator: TunnelNode = await startTunnelNode({ dataChannel: options.carrier === 'data-channel' }, transports)
    stops.push(async () => { await coordinator.stop() })
    const farEnd: FarEnd = await startFarEnd(coordinator.peerId.toString(), transports, { tlsPipe: true })
    stops.push(farEnd.stop)
    const worker = await connectToFarEnd(coordinator, farEnd, options.transport)
    // With a cap, as a coordinator's plan opens it: the cap exchange sets up the data channel.
    const endpoint = await coordinator.services.rpcTunnel.openListener(worker, { maxMessageBytes: DEFAULT_MESSAGE_CAP_BYTES })
    const relay = await startRelay(farEnd.rpcPort)
    stops.push(relay.close)
    const tlsPipe = await startTlsPipe(farEnd.tlsPipePort ?? 0)
    stops.push(tlsPipe.close)

    const sessions: Record<Side, RpcBenchClient> = {
      tunnel: await RpcBenchClient.open(Number(endpoint.split(':')[1])),
      relay: await RpcBenchClient.open(relay.port),
      tlsPipe: await RpcBenchClient.open(tlsPipe.port)
    }
    clients.push(...Object.values(sessions))
    const step = tokenStepRequest(STEP_REQUEST_BYTES, STEP_RESPONSE_BYTES)
    for (let i = 0; i < WARMUP_ROUND_TRIPS; i++) {
      for (const side of SIDES) await roundTrip(sessions[side], step)
    }
    const rtt: Record<Side, number[]> = { tunnel: [], relay: [], tlsPipe: [] }
    for (let i = 0; i < options.samples; i++) {
      for (const side of rotated(i)) {
        await sleep(PAUSE_MS)
        rtt[side].push(await roundTrip(sessions[side], step))
      }
    }
    const connection = coordinator.getConnections(worker).find(c => c.status === 'open')
    if (connection === undefined) throw new Error('the peers are not connected')
    const bulk: Record<Side, number[]> = { tunnel: [], relay: [], tlsPipe: [] }
    for (let i = 0; i < options.bulkRuns; i++) {
      for (const side of rotated(i)) bulk[side].push(await bulkRun(sessions[side], options.bulkBytes))
    }
    const tunnelRtt = Math.round(median(rtt.tunnel))
    const relayRtt = Math.round(median(rtt.relay))
    return {
      tunnel_rtt_p50_us: tunnelRtt,
      relay_rtt_p50_us: relayRtt,
      ratio: tunnelRtt / relayRtt,
      bulk_mb_per_s: median(bulk.tunnel),
      relay_bulk_mb_per_s: median(bulk.relay),
      transport: connection.remoteAddr.toString().includes('/quic') ? 'quic' : 'tcp',
      carrier: (await sessionCarriers(coordinator)).join('+'),
      tls_pipe_rtt_p50_us: Math.round(median(rtt.tlsPipe)),
      tls_pipe_bulk_mb_per_s: median(bulk.tlsPipe)
    }
  } finally {
    for (const client of clients) client.close()
    for (const stop of stops.reverse()) await stop()
  }
}
