import { performance } from 'node:perf_hooks'
import { Counter, Gauge, type Registry } from 'prom-client'
import { COMMAND_NAMES, COMMANDS_WITH_RESPONSE, REQUEST_HEADER_BYTES, RESPONSE_HEADER_BYTES, RpcCommand } from '../../protocols/rpc-tunnel/ggml-rpc.js'
import { RpcRequestValidator } from '../../protocols/rpc-tunnel/request-validator.js'
import { RpcResponseReader } from '../../protocols/rpc-tunnel/response-reader.js'
import type { RelayedCommand, TunnelTraffic } from '../../protocols/rpc-tunnel/index.js'
import type { TokenTime } from '../status-report.js'

// Weight of the newest graph in the moving averages: about the last ten tokens count.
const SMOOTHING = 0.2

interface WorkerState {
  /** smoothed wait per graph: llama-server waiting for the worker's answers, in ms */
  waitMs: number
  /** smoothed answers awaited per graph: each costs one network round trip */
  roundTrips: number
  /** wait and answers since the last GRAPH_COMPUTE */
  cycleWaitMs: number
  cycleRoundTrips: number
  graphs: number
  /** the fastest answer seen: a round trip with next to no work, an upper bound of the network's RTT */
  fastestAnswerMs: number
  /** traffic not yet in the counters, which a scrape puts in (see #putPending) */
  pending: PendingTraffic
}

/** Sums kept as plain numbers on the hot path; commands by their number. */
interface PendingTraffic {
  sentBytes: number
  receivedBytes: number
  commands: number[]
  commandSeconds: number[]
}

function noPendingTraffic (): PendingTraffic {
  return { sentBytes: 0, receivedBytes: 0, commands: COMMAND_NAMES.map(() => 0), commandSeconds: COMMAND_NAMES.map(() => 0) }
}

/**
 * The coordinator's view of each worker's tunnel: bytes each way, time per command, and the
 * time per token a worker costs, split into compute and transfer.
 *
 * Seen from the coordinator, ggml-rpc is strictly request-answer in order: per graph (one per
 * generated token while decoding) llama-server sends inputs, GRAPH_COMPUTE (one-way) and
 * then waits for answers (GET_TENSOR of the results). That wait is the worker's whole cost
 * per token; each awaited answer costs one network round trip, the rest is the worker
 * computing. The split is an estimate: the coordinator cannot see inside the worker.
 */
export class WorkerTokenTimes {
  readonly #workers = new Map<string, WorkerState>()
  readonly #bytes: Counter
  readonly #commandSeconds: Counter
  readonly #commands: Counter

  constructor (registry: Registry, rttMs: (worker: string) => number | null) {
    const registers = [registry]
    // Every chunk and command of every token counts, and prom-client's labelled updates, run
    // cold when a token's traffic wakes the coordinator, would cost a noticeable part of the
    // tunnel's round trip: the hot path adds plain numbers, a scrape puts them in.
    const collect = (): void => { this.#putPending() }
    this.#bytes = new Counter({ name: 'llmesh_tunnel_bytes_total', help: 'ggml-rpc bytes between llama-server and each worker through the coordinator\'s tunnel, by direction: requests sent (tensor data the worker\'s tensor cache supplied included) or answers received', labelNames: ['worker', 'direction'], registers, collect })
    this.#commandSeconds = new Counter({ name: 'llmesh_tunnel_command_seconds_total', help: 'Coordinator-side time of ggml-rpc commands, by worker and command: until the answer arrived for commands with one, else until the request was sent', labelNames: ['worker', 'command'], registers, collect })
    this.#commands = new Counter({ name: 'llmesh_tunnel_commands_total', help: 'ggml-rpc commands sent through the coordinator\'s tunnel, by worker and command', labelNames: ['worker', 'command'], registers, collect })
    const split = (): Array<[string, TokenTime]> => [...this.#workers.keys()].flatMap(worker => {
      const time = this.tokenTime(worker, rttMs(worker))
      return time === null ? [] : [[worker, time] as [string, TokenTime]]
    })
    new Gauge({
      name: 'llmesh_tunnel_token_seconds',
      help: 'Time per generated token each worker costs, by part: compute (the worker working) and transfer (network round trips)',
      labelNames: ['worker', 'part'],
      registers,
      collect () {
        this.reset()
        for (const [worker, time] of split()) {
          this.set({ worker, part: 'compute' }, time.computeMs / 1000)
          this.set({ worker, part: 'transfer' }, time.transferMs / 1000)
        }
      }
    })
  }

  /** Watches one tunnel session to `worker` (a new one per llama-server connection). */
  session (worker: string): TunnelTraffic {
    const state = this.#state(worker)
    const sent = (command: number, seconds: number): void => {
      this.#command(state, command, seconds)
      if (command === RpcCommand.GRAPH_COMPUTE) this.#graphDone(state)
    }
    const answered = (command: number, ms: number): void => {
      this.#command(state, command, ms / 1000)
      state.cycleWaitMs += ms
      state.cycleRoundTrips++
      state.fastestAnswerMs = Math.min(state.fastestAnswerMs, ms)
    }
    const awaiting: Array<{ command: number, since: number }> = []
    let requestSince = 0
    const requests = new RpcRequestValidator(Number.MAX_SAFE_INTEGER, {
      requestStart: () => { requestSince = performance.now() },
      requestEnd: command => {
        const now = performance.now()
        if (COMMANDS_WITH_RESPONSE.has(command)) awaiting.push({ command, since: now })
        else sent(command, (now - requestSince) / 1000)
      }
    })
    const responses = new RpcResponseReader(() => {
      const request = awaiting.shift()
      if (request !== undefined) answered(request.command, performance.now() - request.since)
    })
    // Metrics must never end a session: bytes this parser cannot follow only stop the timing.
    let lost = false
    const follow = (push: () => void): void => {
      if (lost) return
      try {
        push()
      } catch {
        lost = true
      }
    }
    return {
      request: chunk => {
        state.pending.sentBytes += chunk.byteLength
        follow(() => { requests.push(chunk) })
      },
      response: chunk => {
        state.pending.receivedBytes += chunk.byteLength
        follow(() => { responses.push(chunk) })
      },
      relayed: ({ command, requestBytes, responseBytes, startedS, requestEndedS, endedS }: RelayedCommand) => {
        state.pending.sentBytes += REQUEST_HEADER_BYTES + requestBytes
        if (!COMMANDS_WITH_RESPONSE.has(command)) {
          sent(command, requestEndedS - startedS)
          return
        }
        state.pending.receivedBytes += RESPONSE_HEADER_BYTES + responseBytes
        answered(command, (endedS - requestEndedS) * 1000)
      }
    }
  }

  /**
   * The worker's smoothed time per token, split with the network round-trip time: the smaller of
   * the ping RTT `rttMs` and the fastest answer through the tunnel (both include some work besides
   * the network, so the smaller is the better bound). Null before the worker's second graph.
   */
  tokenTime (worker: string, rttMs: number | null): TokenTime | null {
    const state = this.#workers.get(worker)
    if (state === undefined || state.graphs < 2) return null
    const roundTripMs = Math.min(rttMs ?? Infinity, state.fastestAnswerMs)
    const transferMs = Math.min(state.waitMs, state.roundTrips * (Number.isFinite(roundTripMs) ? roundTripMs : 0))
    return { computeMs: round(state.waitMs - transferMs), transferMs: round(transferMs) }
  }

  #state (worker: string): WorkerState {
    let state = this.#workers.get(worker)
    if (state === undefined) {
      state = { waitMs: 0, roundTrips: 0, cycleWaitMs: 0, cycleRoundTrips: 0, graphs: 0, fastestAnswerMs: Infinity, pending: noPendingTraffic() }
      this.#workers.set(worker, state)
    }
    return state
  }

  #command (state: WorkerState, command: number, seconds: number): void {
    state.pending.commands[command]++
    state.pending.commandSeconds[command] += seconds
  }

  #putPending (): void {
    for (const [worker, state] of this.#workers) {
      const { sentBytes, receivedBytes, commands, commandSeconds } = state.pending
      state.pending = noPendingTraffic()
      if (sentBytes > 0) this.#bytes.inc({ worker, direction: 'sent' }, sentBytes)
      if (receivedBytes > 0) this.#bytes.inc({ worker, direction: 'received' }, receivedBytes)
      commands.forEach((count, command) => {
        if (count === 0) return
        this.#commands.inc({ worker, command: COMMAND_NAMES[command] }, count)
        this.#commandSeconds.inc({ worker, command: COMMAND_NAMES[command] }, commandSeconds[command])
      })
    }
  }

  // A GRAPH_COMPUTE starts the next token: the answers awaited since the previous one belong to the last.
  #graphDone (state: WorkerState): void {
    if (state.graphs > 0) {
      const weight = state.graphs === 1 ? 1 : SMOOTHING
      state.waitMs += weight * (state.cycleWaitMs - state.waitMs)
      state.roundTrips += weight * (state.cycleRoundTrips - state.roundTrips)
    }
    state.graphs++
    state.cycleWaitMs = 0
    state.cycleRoundTrips = 0
  }
}

function round (ms: number): number {
  return Math.round(ms * 1000) / 1000
}
