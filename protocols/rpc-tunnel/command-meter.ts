import { performance } from 'node:perf_hooks'
import { commandName, COMMANDS_WITH_RESPONSE } from './ggml-rpc.js'
import { UnexpectedRpcResponseError } from './errors.js'
import type { RpcTunnelMetrics } from './metrics.js'
import type { RequestObserver } from './request-validator.js'

interface Pending {
  command: number
  requestBytes: number
  startedAt: number
}

/**
 * Times each command of one session: a one-way command from its header to its last byte,
 * a command with a response until that response ends. ggml-rpc answers in request order,
 * so responses are matched to requests first in, first out.
 */
export class CommandMeter implements RequestObserver {
  readonly #metrics: RpcTunnelMetrics
  readonly #awaitingResponse: Pending[] = []
  #startedAt = 0

  constructor (metrics: RpcTunnelMetrics) {
    this.#metrics = metrics
  }

  /** Requests whose response has not ended yet. */
  get awaitingResponses (): number {
    return this.#awaitingResponse.length
  }

  requestStart (): void {
    this.#startedAt = performance.now()
  }

  requestEnd (command: number, payloadBytes: number): void {
    if (COMMANDS_WITH_RESPONSE.has(command)) {
      this.#awaitingResponse.push({ command, requestBytes: payloadBytes, startedAt: this.#startedAt })
      return
    }
    this.#metrics.command(commandName(command), payloadBytes, 0, (performance.now() - this.#startedAt) / 1000)
  }

  /** Matches a complete response to its request; throws UnexpectedRpcResponseError if none is waiting. */
  responseEnd (payloadBytes: number): void {
    const pending = this.#awaitingResponse.shift()
    if (pending === undefined) throw new UnexpectedRpcResponseError()
    this.#metrics.command(commandName(pending.command), pending.requestBytes, payloadBytes, (performance.now() - pending.startedAt) / 1000)
  }
}
