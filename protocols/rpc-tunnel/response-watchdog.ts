import { COMMANDS_WITH_RESPONSE, RpcCommand } from './ggml-rpc.js'
import { RpcRequestValidator } from './request-validator.js'
import { RpcResponseReader } from './response-reader.js'
import { WeightLoading } from './weight-loading.js'

/**
 * Watches one coordinator-side tunnel session for a worker that stops answering. The session
 * is busy while llama-server waits for a response or is part-way through sending a request
 * (a hung worker stops draining the stream); a busy session in which no byte moves either
 * way for `timeoutMs` has stalled, and `onStall` is called once. Idle sessions never stall.
 */
export class ResponseWatchdog {
  readonly #timeoutMs: number
  readonly #onStall: () => void
  readonly #requests: RpcRequestValidator
  readonly #responses: RpcResponseReader
  readonly #weights = new WeightLoading()
  #awaiting = 0
  #lastCommand: number | undefined
  #timer: NodeJS.Timeout | undefined
  #done = false

  constructor (timeoutMs: number, onStall: () => void) {
    this.#timeoutMs = timeoutMs
    this.#onStall = onStall
    // llama-server is local and trusted: the parser only frames its requests, it caps nothing.
    this.#requests = new RpcRequestValidator(Number.MAX_SAFE_INTEGER, {
      requestStart: command => { this.#weights.request(command) },
      requestEnd: command => {
        this.#lastCommand = command
        if (COMMANDS_WITH_RESPONSE.has(command)) this.#awaiting++
      }
    })
    this.#responses = new RpcResponseReader(() => { this.#awaiting = Math.max(0, this.#awaiting - 1) })
    this.#rearm()
  }

  /** Bytes llama-server sent toward the worker. */
  request (chunk: Uint8Array): void {
    this.#requests.push(chunk)
    this.#rearm()
  }

  /** Bytes the worker sent back. */
  response (chunk: Uint8Array): void {
    this.#responses.push(chunk)
    this.#rearm()
  }

  /** True while llama-server is part-way through sending a request. */
  get midRequest (): boolean {
    return this.#requests.midMessage
  }

  /** True while a response is part-way received. */
  get midResponse (): boolean {
    return this.#responses.midMessage
  }

  /** True once llama-server asked for its first graph computation: the weights are loaded. */
  get weightsLoaded (): boolean {
    return !this.#weights.loading
  }

  /** True while llama-server waits for a response to a request it sent. */
  get awaitingResponse (): boolean {
    return this.#awaiting > 0
  }

  /** True when the last whole request llama-server sent has the worker compute its graph. */
  get lastRequestComputes (): boolean {
    return this.#lastCommand === RpcCommand.GRAPH_COMPUTE || this.#lastCommand === RpcCommand.GRAPH_RECOMPUTE
  }

  /** Stops watching (the session ended). */
  stop (): void {
    this.#done = true
    clearTimeout(this.#timer)
  }

  // Called for every chunk of the session, so it refreshes one timer instead of making new ones.
  #rearm (): void {
    if (this.#done || (this.#awaiting === 0 && !this.#requests.midMessage)) {
      clearTimeout(this.#timer)
      this.#timer = undefined
      return
    }
    if (this.#timer !== undefined) {
      this.#timer.refresh()
      return
    }
    this.#timer = setTimeout(() => {
      this.#done = true
      this.#onStall()
    }, this.#timeoutMs)
  }
}
