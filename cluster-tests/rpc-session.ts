// Raw ggml-rpc sessions over tunnel streams and the data channel, for the tunnel tests.
import { connect as connectTls } from 'node:tls'
import type { Stream } from '@libp2p/interface'
import { CreditStream } from '../protocols/rpc-tunnel/credit-stream.js'
import { RpcCommand } from '../protocols/rpc-tunnel/ggml-rpc.js'
import { rpcRequest } from '../protocols/rpc-tunnel/test-support/frames.js'

/**
 * A raw session on a tunnel stream: sends ggml-rpc bytes as the tunnel's data frames, collects
 * the data that comes back (granting credit for it) and tells how the stream ended (an error
 * when it was reset or aborted).
 */
export function watchStream (stream: Stream): { send: (bytes: Uint8Array) => void, bytes: () => Uint8Array, closed: Promise<Error | undefined> } {
  const tunnel = new CreditStream(stream)
  const chunks: Uint8Array[] = []
  stream.addEventListener('message', event => {
    const data = tunnel.push(event.data instanceof Uint8Array ? event.data : event.data.subarray())
    chunks.push(...data)
    tunnel.release(data.reduce((sum, part) => sum + part.byteLength, 0))
  })
  const closed = new Promise<Error | undefined>(resolve => {
    // A stream refused at once can be reset before the dial returns it.
    if (stream.status === 'reset' || stream.status === 'aborted') resolve(new Error(`stream ${stream.status}`))
    else if (stream.status === 'closed') resolve(undefined)
    stream.addEventListener('close', event => { resolve(event.error) }, { once: true })
  })
  return { send: bytes => { tunnel.send(bytes) }, bytes: () => new Uint8Array(Buffer.concat(chunks)), closed }
}

/** Sends HELLO on a tunnel stream the bridge may already have reset. */
export function trySendHello (session: { send: (bytes: Uint8Array) => void }): void {
  try {
    session.send(rpcRequest(RpcCommand.HELLO, 24))
  } catch {
    // a reset stream refuses sends, which is what a refusal looks like from this side
  }
}

/**
 * A TLS client on a worker's data channel presenting `identity` (none: no certificate) that
 * sends HELLO at once; resolves with what came back once the worker closed the connection.
 */
export async function tryDataChannel (port: number, identity?: { key: string, cert: string }): Promise<number> {
  return await new Promise((resolve, reject) => {
    const socket = connectTls({ host: '127.0.0.1', port, minVersion: 'TLSv1.3', rejectUnauthorized: false, ...identity })
    let received = 0
    socket.on('secureConnect', () => { socket.write(rpcRequest(RpcCommand.HELLO, 24)) })
    socket.on('data', (chunk: Buffer) => { received += chunk.byteLength })
    // A refusal may reach the client as a reset, a TLS alert or a plain close: all are closes.
    socket.on('error', () => {})
    socket.on('close', () => { resolve(received) })
    setTimeout(() => {
      socket.destroy()
      reject(new Error('the worker kept a data channel connection it should have refused open for 10 s'))
    }, 10_000).unref()
  })
}
