import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

/** Commands kept as plain numbers before prom-client sees them; a busy unscraped worker puts them in at this many. */
const PENDING_COMMANDS_MAX = 1024

/** One finished command, as the hot path records it. */
interface FinishedCommand {
  command: string
  requestBytes: number
  responseBytes: number
  seconds: number
}

/**
 * The tunnel's counters, in the node's own prom-client registry (several nodes may share a
 * process). Labels are command names and refusal reasons only: never payload contents.
 */
export class RpcTunnelMetrics {
  readonly #duration: Histogram
  readonly #requestBytes: Counter
  readonly #responseBytes: Counter
  readonly #refused: Counter
  readonly #sessions: Counter
  readonly #messageCap: Gauge
  readonly #largestRequest: Gauge
  readonly #tensorCache: Counter
  readonly #relays: Counter
  readonly #largest = new Map<string, number>()
  #pending: FinishedCommand[] = []
  /** native relays, asked for the commands they finished before each scrape */
  readonly #commandSources = new Set<() => void>()

  constructor (registry: Registry) {
    const registers = [registry]
    // Whichever of these a scrape reads first puts in the commands recorded since the last.
    const collect = (): void => {
      for (const take of this.#commandSources) take()
      this.#putPending()
    }
    this.#duration = new Histogram({
      name: 'llmesh_rpc_command_duration_seconds',
      help: 'Time from a ggml-rpc request header to its last byte, or to the end of its response for commands that have one, by command',
      labelNames: ['command'],
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers,
      collect
    })
    this.#requestBytes = new Counter({ name: 'llmesh_rpc_request_bytes_total', help: 'Bytes of ggml-rpc requests passed to rpc-server, by command', labelNames: ['command'], registers, collect })
    this.#responseBytes = new Counter({ name: 'llmesh_rpc_response_bytes_total', help: 'Bytes of rpc-server responses passed back, by command', labelNames: ['command'], registers, collect })
    this.#refused = new Counter({ name: 'llmesh_rpc_refused_streams_total', help: 'ggml-rpc tunnel streams closed by the worker bridge, by reason', labelNames: ['reason'], registers })
    this.#sessions = new Counter({ name: 'llmesh_rpc_sessions_total', help: 'ggml-rpc sessions opened (coordinator) or bridged (worker), by carrier: the TLS data channel or a libp2p tunnel stream', labelNames: ['carrier'], registers })
    this.#messageCap = new Gauge({ name: 'llmesh_rpc_message_cap_bytes', help: 'The largest ggml-rpc request payload the worker bridge lets through, as the coordinator last set it from its plan', registers })
    this.#tensorCache = new Counter({
      name: 'llmesh_rpc_tensor_cache_bytes_total',
      help: 'Tensor data in the worker\'s tunnel tensor cache: stored as it passed whole, or passed to rpc-server from the cache instead of crossing the network (hit)',
      labelNames: ['event'],
      registers
    })
    this.#relays = new Counter({
      name: 'llmesh_rpc_native_relays_total',
      help: 'ggml-rpc sessions handed to the native relay once their weights were loaded (coordinator: llama-server\'s; worker: rpc-server\'s), whose decode steps then cross this node without JavaScript',
      registers
    })
    this.#largestRequest = new Gauge({ name: 'llmesh_rpc_largest_request_bytes', help: 'The largest ggml-rpc request payload the worker bridge let through, by command: how close traffic comes to the cap', labelNames: ['command'], registers, collect })
  }

  /**
   * Records one finished command: its request and response payload sizes and how long it took.
   * Kept as numbers until the metrics are read: this runs for every command of every token, and
   * prom-client's labelled updates, run cold when the worker wakes from waiting for its stage,
   * cost a noticeable part of a token's round trip.
   */
  command (command: string, requestBytes: number, responseBytes: number, seconds: number): void {
    this.#pending.push({ command, requestBytes, responseBytes, seconds })
    if (this.#pending.length >= PENDING_COMMANDS_MAX) this.#putPending()
  }

  /**
   * A native relay, which keeps finished commands in native memory: `take` hands them to
   * command(), and is called before every scrape until the returned function removes it.
   */
  commandSource (take: () => void): () => void {
    this.#commandSources.add(take)
    return () => { this.#commandSources.delete(take) }
  }

  #putPending (): void {
    const pending = this.#pending
    this.#pending = []
    for (const { command, requestBytes, responseBytes, seconds } of pending) this.#put(command, requestBytes, responseBytes, seconds)
  }

  #put (command: string, requestBytes: number, responseBytes: number, seconds: number): void {
    this.#duration.observe({ command }, seconds)
    this.#requestBytes.inc({ command }, requestBytes)
    if (requestBytes > (this.#largest.get(command) ?? -1)) {
      this.#largest.set(command, requestBytes)
      this.#largestRequest.set({ command }, requestBytes)
    }
    if (responseBytes > 0) this.#responseBytes.inc({ command }, responseBytes)
  }

  /** Counts a session handed to the native relay. */
  relayed (): void {
    this.#relays.inc()
  }

  /** Shows the message cap a coordinator set. */
  messageCap (bytes: number): void {
    this.#messageCap.set(bytes)
  }

  /** Counts tensor data the tensor cache stored, or served instead of the network. */
  tensorCache (event: 'stored' | 'hit', bytes: number): void {
    this.#tensorCache.inc({ event }, bytes)
  }

  /** Counts a session opened or bridged over `carrier`. */
  session (carrier: 'data-channel' | 'libp2p'): void {
    this.#sessions.inc({ carrier })
  }

  /** Counts a tunnel stream the bridge closed. */
  refused (reason: string): void {
    this.#refused.inc({ reason })
  }
}
