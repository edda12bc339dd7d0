import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PeerId } from '@libp2p/interface'
import { nativeSockets } from '../../node/native-socket.js'
import { createChannelIdentity, type ChannelIdentity } from './channel-identity.js'
import { CHANNEL_HANDSHAKE_MS, CHANNEL_PENDING_CONNECTIONS, connectDataChannel, DataChannelServer, type DataChannelTarget, type NativeChannelTls } from './data-channel.js'
import { RpcDataChannelError } from './errors.js'
import { TUNNEL_WINDOW_BYTES, type TunnelEnd } from './tunnel-end.js'
import type { NativeSocketAddon } from './native-socket/addon.js'

async function newPeerId (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

const sockets = nativeSockets()
// The machines llmesh is tested on have a C compiler and node's headers: the native TLS must build there.
if (sockets.addon === undefined) throw new Error(`the native socket addon cannot be built: ${sockets.why}`)
const addon: NativeSocketAddon = sockets.addon

/** The next arrival on `end`. */
async function nextData (end: TunnelEnd): Promise<string> {
  return await new Promise(resolve => { end.onData(parts => { resolve(Buffer.concat(parts).toString()) }) })
}

/** Reads `end` until it closes; resolves with the error it closed with. */
async function closed (end: TunnelEnd): Promise<Error | undefined> {
  return await new Promise(resolve => {
    end.onClose(resolve)
    end.onData(parts => { end.release(parts.reduce((sum, part) => sum + part.byteLength, 0)) })
  })
}

/** True while what `end` was given to send still waits for the carrier. */
function heldBack (end: TunnelEnd): boolean {
  let writable = false
  end.onceWritable(() => { writable = true })
  return !writable
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Each side's TLS: native (native-socket/) or Node's; the wire is TLS 1.3 either way. */
type Tls = 'native' | 'node'

/** The data channel's tests with `serverTls` on the worker and `clientTls` on the coordinator; `all`, or only the ones about the wire. */
function channelTests (serverTls: Tls, clientTls: Tls, all: boolean): void {
  describe(`the tunnel's data channel, ${serverTls} TLS serving ${clientTls} TLS`, () => {
    let coordinatorKey: ChannelIdentity
    let coordinator: PeerId
    let server: DataChannelServer
    const sessions: Array<{ end: TunnelEnd, coordinator: PeerId }> = []
    const refusals: string[] = []
    const reasons: string[] = []
    const serverAddon = serverTls === 'native' ? addon : undefined

    before(async () => {
      coordinatorKey = await createChannelIdentity()
      coordinator = await newPeerId()
      server = await DataChannelServer.listen({
        hosts: ['127.0.0.1'],
        port: 0,
        identity: await createChannelIdentity(),
        nativeTls: serverAddon,
        maxSessions: 2,
        onSession: (end, peer) => { sessions.push({ end, coordinator: peer }) },
        onRefused: (reason, why) => {
          reasons.push(reason)
          refusals.push(why)
        }
      })
      server.admit(coordinator, coordinatorKey.sha256)
    })

    after(async () => {
      await server?.close()
    })

    const target = (): DataChannelTarget => ({ host: '127.0.0.1', port: server.port, sha256: server.sha256 })
    const clientNative = (identity: ChannelIdentity): NativeChannelTls | undefined => clientTls === 'native' ? { addon, context: addon.createContext(identity.key, identity.cert, false) } : undefined
    const open = async (to: DataChannelTarget, identity = coordinatorKey): Promise<TunnelEnd> => await connectDataChannel(to, identity, clientNative(identity))
    const nextSession = async (): Promise<{ end: TunnelEnd, coordinator: PeerId }> => {
      while (sessions.length === 0) await sleep(5)
      return sessions.shift() as { end: TunnelEnd, coordinator: PeerId }
    }
    const done = new Error('test done')

    it('serves the key a coordinator named, as that coordinator, both ways, then closes cleanly from either side', async () => {
      for (const closer of ['coordinator', 'worker'] as const) {
        const client = await open(target())
        const session = await nextSession()
        assert.ok(session.coordinator.equals(coordinator))
        const request = nextData(session.end)
        client.send(Buffer.from('ping'))
        assert.equal(await request, 'ping')
        const answer = nextData(client)
        session.end.send(Buffer.from('pong'))
        assert.equal(await answer, 'pong')
        // The other side sees the end, and both close without an error.
        const [first, second] = closer === 'coordinator' ? [client, session.end] : [session.end, client]
        const ended = new Promise<void>(resolve => { second.onEnd(resolve) })
        const closes = [closed(first), closed(second)]
        await first.closeWhenSent()
        await ended
        assert.deepEqual(await Promise.all(closes), [undefined, undefined])
      }
    })

    it('carries a large transfer whole and in order', async () => {
      const client = await open(target())
      const session = await nextSession()
      const sent = Buffer.alloc(8 * 1024 * 1024 + 13)
      for (let i = 0; i < sent.length; i++) sent[i] = (i * 7919) & 0xff
      const received: Buffer[] = []
      let bytes = 0
      const all = new Promise<void>(resolve => {
        session.end.onData(parts => {
          for (const part of parts) {
            received.push(Buffer.from(part))
            bytes += part.byteLength
            session.end.release(part.byteLength)
          }
          if (bytes === sent.length) resolve()
        })
      })
      for (let offset = 0; offset < sent.length; offset += 1024 * 1024) {
        if (!client.send(sent.subarray(offset, offset + 1024 * 1024))) await new Promise<void>(resolve => { client.onceWritable(resolve) })
      }
      await all
      assert.ok(Buffer.concat(received).equals(sent))
      client.abort(done)
      session.end.abort(done)
    })

    it('hands on every byte before the end, even to a receiver that held the sender back', async () => {
      const client = await open(target())
      const session = await nextSession()
      const sent = TUNNEL_WINDOW_BYTES * 4 + 7
      let received = 0
      const ended = new Promise<number>(resolve => { session.end.onEnd(() => { resolve(received) }) })
      // Handed on a little at a time, so that the receiver stops reading again and again.
      session.end.onData(parts => {
        const bytes = parts.reduce((sum, part) => sum + part.byteLength, 0)
        received += bytes
        setTimeout(() => { session.end.release(bytes) }, 2)
      })
      client.send(Buffer.alloc(sent, 1))
      await client.closeWhenSent()
      assert.equal(await ended, sent)
      client.abort(done)
      session.end.abort(done)
    })

    if (!all) return
    it('serves session after session, each ended another way, every byte echoed', async () => {
      for (let i = 0; i < 40; i++) {
        const client = await open(target())
        const session = await nextSession()
        session.end.onData(parts => {
          for (const part of parts) {
            session.end.release(part.byteLength)
            if (session.end.writable) session.end.send(part)
          }
        })
        const size = (i * 7919) % 300_000 + 1
        let echoed = 0
        const back = new Promise<void>(resolve => {
          client.onData(parts => {
            for (const part of parts) {
              echoed += part.byteLength
              client.release(part.byteLength)
            }
            if (echoed >= size) resolve()
          })
        })
        client.send(Buffer.alloc(size, i))
        await back
        assert.equal(echoed, size)
        const clientClosed = closed(client)
        const sessionClosed = new Promise(resolve => { session.end.onClose(resolve) })
        switch (i % 3) {
          case 0: client.abort(done); break
          case 1: await client.closeWhenSent(); break
          default: session.end.abort(done)
        }
        await Promise.all([clientClosed, sessionClosed])
      }
    })


    it('refuses a key that no coordinator named, and forgets a coordinator\'s older key', async () => {
      const stranger = await createChannelIdentity()
      const refused = refusals.length
      // TLS 1.3 finishes the client's side before the server has checked its certificate: the refusal is a close.
      await closed(await open(target(), stranger))
      const newer = await createChannelIdentity()
      server.admit(coordinator, newer.sha256)
      await closed(await open(target()))
      assert.equal(refusals.length, refused + 2)
      assert.match(refusals.at(-1) ?? '', /no coordinator named/)
      server.admit(coordinator, coordinatorKey.sha256)
    })

    it('rejects a server whose certificate is not the one the worker named', async () => {
      // A server of its own: the one the client gave up on may still count the session as its own.
      const other = await DataChannelServer.listen({ hosts: ['127.0.0.1'], port: 0, identity: await createChannelIdentity(), nativeTls: serverAddon, maxSessions: 1, onSession: () => {}, onRefused: () => {} })
      other.admit(coordinator, coordinatorKey.sha256)
      try {
        await assert.rejects(open({ host: '127.0.0.1', port: other.port, sha256: (await createChannelIdentity()).sha256 }), (err: Error) => {
          assert.ok(err instanceof RpcDataChannelError)
          assert.match(err.message, /certificate other than the one the worker named/)
          return true
        })
      } finally {
        await other.close()
      }
    })

    // Loopback only (tests listen on no other address); the wildcards '0.0.0.0' and '::' go together the same way.
    it('listens on every host of the node, IPv4 and IPv6, on one port', async (t) => {
      const both = await DataChannelServer.listen({ hosts: ['127.0.0.1', '::1'], port: 0, identity: await createChannelIdentity(), nativeTls: serverAddon, maxSessions: 1, onSession: end => { end.abort(done) }, onRefused: () => {} }).catch((err: NodeJS.ErrnoException) => {
        // A machine without IPv6 cannot listen on '::' at all.
        if (err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL') return undefined
        throw err
      })
      if (both === undefined) {
        t.skip('this machine has no IPv6')
        return
      }
      try {
        for (const host of ['127.0.0.1', '::1']) {
          const refused = refusals.length
          const client = await open({ host, port: both.port, sha256: both.sha256 }).catch(() => undefined)
          assert.ok(client !== undefined, `reachable on ${host}`)
          client.abort(done)
          assert.equal(refusals.length, refused)
        }
      } finally {
        await both.close()
      }
    })

    it('rejects at once where nothing listens', async () => {
      const probe = createServer()
      await new Promise<void>(resolve => probe.listen(0, '127.0.0.1', resolve))
      const { port } = probe.address() as AddressInfo
      await new Promise(resolve => probe.close(resolve))
      await assert.rejects(open({ ...target(), port }), RpcDataChannelError)
    })

    it('drops connections beyond its bound at once, closes silent ones after the handshake timeout, then serves the coordinator again', async () => {
      const count = (reason: string): number => reasons.filter(r => r === reason).length
      const handshakesBefore = count('tls-handshake')
      const dropsBefore = count('too-many-connections')
      // A flood: connections that never start their TLS handshake, up to the bound (2 sessions here).
      const flood: Socket[] = []
      try {
        for (let i = 0; i < 2 + CHANNEL_PENDING_CONNECTIONS; i++) {
          const socket = connect({ host: '127.0.0.1', port: server.port })
          socket.on('error', () => {})
          flood.push(socket)
          await once(socket, 'connect')
        }
        const extra = connect({ host: '127.0.0.1', port: server.port })
        extra.on('error', () => {})
        await once(extra, 'close')
        assert.equal(count('too-many-connections'), dropsBefore + 1)
        await assert.rejects(open(target()), RpcDataChannelError)
        // The worker ends each of them once its handshake is overdue.
        let overdue: NodeJS.Timeout | undefined
        await Promise.race([
          Promise.all(flood.map(async socket => { if (!socket.destroyed) await once(socket, 'close') })),
          new Promise((_resolve, reject) => {
            overdue = setTimeout(() => { reject(new Error('silent connections still open well after the handshake timeout')) }, CHANNEL_HANDSHAKE_MS + 10_000)
          })
        ]).finally(() => { clearTimeout(overdue) })
        assert.equal(count('tls-handshake'), handshakesBefore + flood.length)
      } finally {
        for (const socket of flood) socket.destroy()
      }
      // The worker counts a connection gone once its socket closed, a moment after the failure.
      let client: TunnelEnd | undefined
      for (let tries = 1; client === undefined; tries++) {
        client = await open(target()).catch(err => {
          if (tries === 50) throw err
          return undefined
        })
        if (client === undefined) await sleep(20)
      }
      const session = await nextSession()
      client.abort(done)
      session.end.abort(done)
    })

    it('reads no more than its read-ahead window while the receiver does not hand data on', async () => {
      const client = await open(target())
      const session = await nextSession()
      let arrived = 0
      session.end.onData(parts => { for (const part of parts) arrived += part.byteLength })
      // Window after window until the sender is held back: first the kernels' socket buffers
      // fill, which autotuning may grow to tens of MiB.
      const block = Buffer.alloc(TUNNEL_WINDOW_BYTES)
      let written = 0
      while (!heldBack(client) || written === 0) {
        if (written >= 64 * 1024 * 1024) break
        client.send(block)
        written += block.byteLength
        await sleep(50)
      }
      assert.ok(heldBack(client), `the sender is held back (${written} bytes written)`)
      assert.ok(arrived >= TUNNEL_WINDOW_BYTES && arrived < TUNNEL_WINDOW_BYTES + 256 * 1024, `read ${arrived} bytes ahead`)
      // Handed on, the rest follows.
      let released = 0
      while (arrived < written) {
        session.end.release(arrived - released)
        released = arrived
        await sleep(5)
      }
      assert.equal(arrived, written)
      client.abort(done)
      session.end.abort(done)
    })
  })
}

channelTests('native', 'native', true)
channelTests('node', 'node', true)
// Either side may run either TLS: a worker and a coordinator of different builds still talk.
channelTests('native', 'node', false)
channelTests('node', 'native', false)
