// Raw ggml-rpc sessions over tunnel streams, for the tunnel tests.
import type { Stream } from '@libp2p/interface'
import { RpcCommand } from '../protocols/rpc-tunnel/ggml-rpc.js'
import { rpcRequest } from '../protocols/rpc-tunnel/test-support/frames.js'

/** Collects a stream's bytes and tells how it ended (an error when it was reset or aborted). */
export function watchStream (stream: Stream): { bytes: () => Uint8Array, closed: Promise<Error | undefined> } {
  const chunks: Uint8Array[] = []
  stream.addEventListener('message', event => {
    chunks.push(event.data instanceof Uint8Array ? event.data : event.data.subarray())
  })
  const closed = new Promise<Error | undefined>(resolve => {
    // A stream refused at once can be reset before the dial returns it.
    if (stream.status === 'reset' || stream.status === 'aborted') resolve(new Error(`stream ${stream.status}`))
    else if (stream.status === 'closed') resolve(undefined)
    stream.addEventListener('close', event => { resolve(event.error) }, { once: true })
  })
  return { bytes: () => new Uint8Array(Buffer.concat(chunks)), closed }
}

/** Sends HELLO on a tunnel stream the bridge may already have reset. */
export function trySendHello (stream: Stream): void {
  try {
    stream.send(rpcRequest(RpcCommand.HELLO, 24))
  } catch {
    // a reset stream refuses sends, which is what a refusal looks like from this side
  }
}
