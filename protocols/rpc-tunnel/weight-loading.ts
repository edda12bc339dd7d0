import { RpcCommand } from './ggml-rpc.js'

/**
 * Follows a session's requests to tell when the model's weights are loaded. llama.cpp sets
 * every weight before it computes anything; a SET_TENSOR after the first GRAPH_COMPUTE carries
 * a graph's inputs (hidden states of a prompt), which must never be kept or even hashed.
 */
export class WeightLoading {
  #done = false

  /** True until the session's first GRAPH_COMPUTE. */
  get loading (): boolean {
    return !this.#done
  }

  /** Sees the next request's command. */
  request (command: number): void {
    if (command === RpcCommand.GRAPH_COMPUTE) this.#done = true
  }
}
