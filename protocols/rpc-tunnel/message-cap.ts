import { MESSAGE_MARGIN_BYTES } from './constants.js'
import { RpcTunnelOptionsError } from './errors.js'

/** The largest ggml-rpc request a worker lets through for a model whose largest tensor has `largestTensorBytes`. */
export function messageCapFor (largestTensorBytes: number): number {
  if (!Number.isSafeInteger(largestTensorBytes) || largestTensorBytes < 0) {
    throw new RpcTunnelOptionsError(`the largest tensor size must be a whole number of bytes, got ${largestTensorBytes}`)
  }
  return largestTensorBytes + MESSAGE_MARGIN_BYTES
}
