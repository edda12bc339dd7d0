import '../../node/polyfill.js'
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startTunnelNode, type TunnelNode } from '../../tools/tunnel-node.js'
import { encodeFrame } from '../framing.js'
import { CREDIT_GRANT_BYTES, CreditStream, MAX_DATA_FRAME_BYTES, TunnelFrameType } from './credit-stream.js'
import { TUNNEL_WINDOW_BYTES } from './tunnel-end.js'
import { RpcCreditExceededError, RpcTunnelFrameError } from './errors.js'
import type { Stream } from '@libp2p/interface'

const PROTOCOL = '/llmesh-test/credit/1.0.0'

function creditFrame (bytes: number): Uint8Array {
  const payload = new Uint8Array(8)
  new DataView(payload.buffer).setBigUint64(0, BigInt(bytes))
  return encodeFrame(TunnelFrameType.credit, payload)
}

async function until (condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

// Both ends of a real libp2p stream: what one side sends, decoded by a CreditStream on the other.
describe('CreditStream', () => {
  let a: TunnelNode
  let b: TunnelNode
  const incoming: Array<(stream: Stream) => void> = []

  before(async () => {
    a = await startTunnelNode()
    b = await startTunnelNode()
    await b.handle(PROTOCOL, stream => { incoming.shift()?.(stream) })
    await a.dial(b.getMultiaddrs()[0])
  })
  after(async () => { await Promise.all([a?.stop(), b?.stop()]) })

  /** A stream from a to b; the receiving side decodes what arrives, keeping the data or the first error. */
  async function pair (): Promise<{ near: Stream, far: CreditStream, received: Uint8Array[], failure: () => Error | undefined }> {
    const inbound = new Promise<Stream>(resolve => incoming.push(resolve))
    const near = await a.dialProtocol(b.peerId, PROTOCOL)
    const farStream = await inbound
    const far = new CreditStream(farStream)
    const received: Uint8Array[] = []
    let failure: Error | undefined
    farStream.addEventListener('message', event => {
      if (failure !== undefined) return
      try {
        received.push(...far.push(event.data.subarray()))
      } catch (err) {
        failure = err as Error
      }
    })
    return { near, far, received, failure: () => failure }
  }

  const total = (parts: Uint8Array[]): number => parts.reduce((sum, part) => sum + part.byteLength, 0)

  it('sends no more than its window until credit comes back, then the rest, in order', async () => {
    const { near, far, received } = await pair()
    const sender = new CreditStream(near)
    near.addEventListener('message', event => { sender.push(event.data.subarray()) })
    const data = new Uint8Array(TUNNEL_WINDOW_BYTES + 1000).map((_, i) => i % 251)
    assert.equal(sender.send(data), false, 'the send waits for credit')
    await until(() => total(received) >= TUNNEL_WINDOW_BYTES, 'the window')
    await new Promise(resolve => setTimeout(resolve, 200))
    assert.equal(total(received), TUNNEL_WINDOW_BYTES, 'exactly the window crossed')
    const writable = new Promise<void>(resolve => { sender.onceWritable(resolve) })
    far.release(CREDIT_GRANT_BYTES)
    await writable
    await until(() => total(received) === data.byteLength, 'the rest')
    assert.deepEqual(Buffer.concat(received), Buffer.from(data))
    near.abort(new Error('done'))
  })

  it('refuses data beyond the credit it granted', async () => {
    const { near, failure } = await pair()
    for (let sent = 0; sent <= TUNNEL_WINDOW_BYTES; sent += MAX_DATA_FRAME_BYTES) near.send(encodeFrame(TunnelFrameType.data, new Uint8Array(MAX_DATA_FRAME_BYTES)))
    await until(() => failure() !== undefined, 'a refusal')
    assert.ok(failure() instanceof RpcCreditExceededError, String(failure()))
    near.abort(new Error('done'))
  })

  it('refuses a frame that is not the tunnel\'s, and a grant for data never sent', async () => {
    const stranger = await pair()
    stranger.near.send(Uint8Array.from({ length: 16 }, (_, i) => i))
    await until(() => stranger.failure() !== undefined, 'a refusal')
    assert.ok(stranger.failure() instanceof RpcTunnelFrameError, String(stranger.failure()))
    stranger.near.abort(new Error('done'))
    const greedy = await pair()
    greedy.near.send(creditFrame(1))
    await until(() => greedy.failure() !== undefined, 'a refusal')
    assert.ok(greedy.failure() instanceof RpcCreditExceededError, String(greedy.failure()))
    greedy.near.abort(new Error('done'))
  })
})
