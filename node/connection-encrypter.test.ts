import './polyfill.js'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Socket } from 'node:net'
import { after, before, describe, it, mock } from 'node:test'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { meshNoise } from './connection-encrypter.js'
import { meshStreamMuxer } from './stream-muxer.js'
import type { Stream } from '@libp2p/interface'

const PROTOCOL = '/llmesh-test/frames/1.0.0'
// The smallest frame on the wire: a 2-byte length prefix, a 12-byte yamux header, a 16-byte tag.
const SMALLEST_FRAME_BYTES = 2 + 12 + 16

/** All the bytes the stream receives, joined, once `total` have arrived. */
async function readBytes (stream: Stream, total: number): Promise<Buffer> {
  const parts: Buffer[] = []
  let received = 0
  return await new Promise(resolve => {
    stream.addEventListener('message', event => {
      const data = event.data instanceof Uint8Array ? event.data : event.data.subarray()
      parts.push(Buffer.from(data))
      received += data.byteLength
      if (received >= total) resolve(Buffer.concat(parts))
    })
  })
}

describe('meshNoise', () => {
  let sender: Libp2p
  let receiver: Libp2p
  const incoming: Array<(stream: Stream) => void> = []

  const start = async (): Promise<Libp2p> => await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [meshNoise()],
    streamMuxers: [meshStreamMuxer()],
    connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'] }
  })

  before(async () => {
    sender = await start()
    receiver = await start()
    await receiver.handle(PROTOCOL, stream => { incoming.shift()?.(stream) })
  })

  after(async () => {
    await Promise.all([sender?.stop(), receiver?.stop()])
  })

  async function openStream (): Promise<{ outbound: Stream, inbound: Stream }> {
    const inbound = new Promise<Stream>(resolve => incoming.push(resolve))
    const outbound = await sender.dialProtocol(receiver.getMultiaddrs()[0], PROTOCOL)
    return { outbound, inbound: await inbound }
  }

  it('writes every encrypted frame to the socket in one piece', async () => {
    const { outbound, inbound } = await openStream()
    const message = randomBytes(10_936)
    const arrived = readBytes(inbound, message.byteLength)
    const writes = mock.method(Socket.prototype, 'write')
    try {
      outbound.send(message)
      assert.deepEqual(await arrived, message)
      // The receiver's window update goes out right after the message is delivered.
      await nextTurn()
    } finally {
      writes.mock.restore()
    }
    const sizes = writes.mock.calls.map(call => (call.arguments[0] as Uint8Array).byteLength)
    // The message is one frame: one write carries it (Noise's list of pieces would be four).
    assert.equal(sizes.filter(size => size > message.byteLength).length, 1, `writes of ${sizes.join(', ')} bytes`)
    // No write carries a piece of a frame, such as a bare length prefix or tag.
    assert.ok(sizes.every(size => size >= SMALLEST_FRAME_BYTES), `writes of ${sizes.join(', ')} bytes`)
  })

  it('carries a large message intact, frame after frame', async () => {
    const { outbound, inbound } = await openStream()
    const message = randomBytes(3 * 1024 * 1024 + 17)
    const arrived = readBytes(inbound, message.byteLength)
    outbound.send(message)
    assert.deepEqual(await arrived, message)
  })
})
