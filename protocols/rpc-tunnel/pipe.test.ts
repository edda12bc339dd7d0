import '../../node/polyfill.js'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { nativeSockets } from '../../node/native-socket.js'
import { startTunnelNode, type TunnelNode } from '../../tools/tunnel-node.js'
import { CreditStream, MAX_DATA_FRAME_BYTES } from './credit-stream.js'
import { acceptedLocalEnd, connectLocal, localServerOptions } from './local-connection.js'
import { TUNNEL_WINDOW_BYTES } from './tunnel-end.js'
import { pipeLocalAndTunnel } from './pipe.js'
import type { NativeSocketAddon } from './native-socket/addon.js'
import type { Stream } from '@libp2p/interface'

const PROTOCOL = '/llmesh-test/pipe/1.0.0'

const sockets = nativeSockets()
// The machines llmesh is tested on have a C compiler and node's headers: the addon must build there.
if (sockets.addon === undefined) throw new Error(`the native socket addon cannot be built: ${sockets.why}`)

/** The local connection as Node sockets, and in the native addon. */
const LOCAL_ENDS: Array<{ kind: string, native: NativeSocketAddon | undefined }> = [
  { kind: 'Node socket', native: undefined },
  { kind: 'native socket', native: sockets.addon }
]

/** What reached the far end of the stream: one entry per stream message, and whether it ended. */
interface Received { messages: string[], ended: Promise<void> }

for (const { kind, native } of LOCAL_ENDS) {
  // A TCP client socket piped (on the server side of the connection) into a real libp2p stream.
  describe(`pipeLocalAndTunnel holding bytes back (${kind})`, () => {
    let sender: TunnelNode
    let receiver: TunnelNode
    let server: Server
    const accepted: Socket[] = []
    const incoming: Array<(stream: Stream) => void> = []

    before(async () => {
      sender = await startTunnelNode()
      receiver = await startTunnelNode()
      await receiver.handle(PROTOCOL, stream => { incoming.shift()?.(stream) })
      await sender.dial(receiver.getMultiaddrs()[0])
      server = createServer(localServerOptions(native), socket => { accepted.push(socket) })
      await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    })

    after(async () => {
      server?.close()
      await Promise.all([sender?.stop(), receiver?.stop()])
    })

    /** Pipes a new TCP connection into a new stream with `hold`; returns the client socket and what arrives. */
    /** `keepBack`: fromSocket sends none of the bytes on (as with tensor data the worker holds already) */
    async function pipe (hold: (seen: number) => boolean, holdQuietMs?: number, keepBack = false): Promise<{ client: Socket, received: Received, piped: Promise<Error | undefined>, seen: () => number }> {
      const inbound = new Promise<Stream>(resolve => incoming.push(resolve))
      const client = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, noDelay: true })
      await once(client, 'connect')
      while (accepted.length === 0) await nextTurn()
      const socket = accepted.shift() as Socket
      const stream = await sender.dialProtocol(receiver.peerId, PROTOCOL)
      const far = await inbound
      const messages: string[] = []
      const farTunnel = new CreditStream(far)
      far.addEventListener('message', event => {
        const data = farTunnel.push(event.data.subarray())
        if (data.length > 0) messages.push(Buffer.concat(data).toString())
      })
      // The far end closes when the near end does, as the worker bridge's rpc-server would.
      const ended = new Promise<void>(resolve => {
        far.addEventListener('remoteCloseWrite', () => {
          resolve()
          void far.close()
        }, { once: true })
      })
      let seen = 0
      const piped = pipeLocalAndTunnel(acceptedLocalEnd(socket, native), new CreditStream(stream), {
        fromSocket: chunk => {
          seen += chunk.byteLength
          return keepBack ? [] : [chunk]
        },
        holdSocketBytes: () => hold(seen),
        holdQuietMs
      })
      return { client, received: { messages, ended }, piped, seen: () => seen }
    }

    async function until (condition: () => boolean): Promise<void> {
      const deadline = Date.now() + 10_000
      while (!condition()) {
        assert.ok(Date.now() < deadline, 'timed out')
        await new Promise(resolve => setTimeout(resolve, 5))
      }
    }

    it('sends what arrives in several writes as one stream message once it may go', async () => {
      // A quiet time far beyond the test: only the end of the message may release the bytes.
      const { client, received } = await pipe(seen => seen < 9, 60_000)
      for (const part of ['abc', 'def', 'ghi']) {
        client.write(part)
        await new Promise(resolve => setTimeout(resolve, 20))
      }
      await until(() => received.messages.length > 0)
      assert.deepEqual(received.messages, ['abcdefghi'])
      client.destroy()
    })

    it('sends held bytes once the socket has been quiet a moment, never keeps them', async () => {
      const { client, received } = await pipe(() => true)
      client.write('lonely')
      await until(() => received.messages.length > 0)
      assert.deepEqual(received.messages, ['lonely'])
      client.destroy()
    })

    it('sends a large message on in parts instead of buffering it whole', async () => {
      const { client, received } = await pipe(() => true)
      client.write(Buffer.alloc(1024 * 1024, 'x'))
      await until(() => received.messages.join('').length === 1024 * 1024)
      assert.ok(received.messages.length > 1, 'the megabyte crossed in several messages')
      client.destroy()
    })

    it('goes on reading a socket whose bytes it keeps back, far beyond the read-ahead window', async () => {
      const { client, seen } = await pipe(() => false, undefined, true)
      const total = 3 * TUNNEL_WINDOW_BYTES
      client.write(Buffer.alloc(total))
      await until(() => seen() === total)
      client.destroy()
    })

    it('sends held bytes before the end of the stream when the socket closes', async () => {
      const { client, received, piped } = await pipe(() => true)
      client.end('last words')
      await received.ended
      assert.deepEqual(received.messages, ['last words'])
      assert.equal(await piped, undefined)
    })
  })

  // The worker's side of a model load: tensor data from the stream into rpc-server's socket. Pausing
  // a QUIC stream does not hold its sender back: only the tunnel's own credit does, on either transport.
  for (const transport of ['tcp', 'quic'] as const) {
    describe(`pipeLocalAndTunnel into a socket whose reader stalls (${transport}, ${kind})`, () => {
      const MiB = 1024 * 1024
      let sender: TunnelNode
      let receiver: TunnelNode
      const servers: Server[] = []

      before(async () => {
        sender = await startTunnelNode({}, 'tcp+quic')
        receiver = await startTunnelNode({}, 'tcp+quic')
        const connection = await sender.dial(receiver.getMultiaddrs().filter(addr => addr.toString().includes(transport === 'quic' ? '/quic-v1' : '/tcp/'))[0])
        assert.equal(connection.remoteAddr.toString().includes('/quic-v1'), transport === 'quic')
      })

      after(async () => {
        for (const server of servers) server.close()
        await Promise.all([sender?.stop(), receiver?.stop()])
      })

      /**
       * Sends `totalBytes` as fast as the tunnel's credit allows into a pipe whose socket's reader
       * stops reading for `stallMs` each time it has read another `stallEveryBytes` (rpc-server busy),
       * and fails unless the reader gets every byte without the stream being aborted, and the
       * receiving side never holds more than the credit window for the stalled reader.
       */
      async function sendThroughStallingReader (totalBytes: number, stallEveryBytes: number, stallMs: number): Promise<void> {
        let readBytes = 0
        let mostBuffered = 0
        const allRead = new Promise<void>(resolve => {
          const server = createServer(socket => {
            let stalls = 0
            socket.on('data', (chunk: Buffer) => {
              readBytes += chunk.byteLength
              if (readBytes >= totalBytes) resolve()
              if (readBytes >= stallEveryBytes * (stalls + 1)) {
                stalls++
                socket.pause()
                setTimeout(() => socket.resume(), stallMs)
              }
            })
          })
          servers.push(server)
        })
        const server = servers[servers.length - 1]
        await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
        const piped = new Promise<Error | undefined>(resolve => {
          void receiver.handle(PROTOCOL, async stream => {
            const local = await connectLocal((server.address() as AddressInfo).port, native)
            const watch = setInterval(() => { mostBuffered = Math.max(mostBuffered, local.bufferedBytes) }, 5)
            resolve(await pipeLocalAndTunnel(local, new CreditStream(stream)))
            clearInterval(watch)
          }, { force: true })
        })
        const stream = await sender.dialProtocol(receiver.peerId, PROTOCOL)
        const tunnel = new CreditStream(stream)
        // The receiver's grants come back on the stream.
        stream.addEventListener('message', event => { tunnel.push(event.data.subarray()) })
        const chunk = new Uint8Array(64 * 1024)
        for (let sent = 0; sent < totalBytes && stream.status === 'open'; sent += chunk.byteLength) {
          if (!tunnel.send(chunk)) await Promise.race([new Promise<void>(resolve => { tunnel.onceWritable(resolve) }), once(stream, 'close')])
        }
        // An aborted stream ends the pipe with its error long before the reader has everything.
        const failure = await Promise.race([allRead.then(() => undefined), piped.then(err => err ?? new Error('the pipe ended early'))])
        assert.equal(failure, undefined)
        assert.equal(readBytes, totalBytes)
        assert.ok(mostBuffered <= TUNNEL_WINDOW_BYTES + MAX_DATA_FRAME_BYTES, `the receiver held ${mostBuffered} bytes for the stalled reader, more than the credit window`)
        await stream.close()
        assert.equal(await piped, undefined)
      }

      it('holds the sender back while the reader stalls, and loses nothing', async () => {
        // 16 MiB before the stall: far beyond the 4 MiB a stream may hold unread.
        await sendThroughStallingReader(48 * MiB, 16 * MiB, 1500)
      })

      it('holds the sender back through stall after stall, each soon after the socket drained', async () => {
        // Stalls closer together than the window: what arrived meanwhile fills the socket again at
        // once. (Over yamux's pause() it once overran the stream's 4 MiB read buffer, which reset the
        // tunnel stream of a model load on a busy worker.)
        await sendThroughStallingReader(16 * MiB, MiB / 4, 10)
      })
    })
  }
}
