import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import type { TLSSocket } from 'node:tls'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PeerId } from '@libp2p/interface'
import { createChannelIdentity, type ChannelIdentity } from './channel-identity.js'
import { CHANNEL_HANDSHAKE_MS, CHANNEL_PENDING_CONNECTIONS, connectDataChannel, DataChannelServer } from './data-channel.js'
import { RpcDataChannelError } from './errors.js'
import { TUNNEL_WINDOW_BYTES, SocketTunnelEnd } from './tunnel-end.js'

async function newPeerId (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

describe('the tunnel\'s data channel', () => {
  let coordinatorKey: ChannelIdentity
  let coordinator: PeerId
  let server: DataChannelServer
  const sessions: Array<{ socket: TLSSocket, coordinator: PeerId }> = []
  const refusals: string[] = []
  const reasons: string[] = []

  before(async () => {
    coordinatorKey = await createChannelIdentity()
    coordinator = await newPeerId()
    server = await DataChannelServer.listen({
      hosts: ['127.0.0.1'],
      port: 0,
      identity: await createChannelIdentity(),
      maxSessions: 2,
      onSession: (socket, peer) => {
        socket.on('error', () => {})
        sessions.push({ socket, coordinator: peer })
      },
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

  const target = (): { host: string, port: number, sha256: string } => ({ host: '127.0.0.1', port: server.port, sha256: server.sha256 })

  async function endedByWorker (socket: TLSSocket): Promise<void> {
    if (!socket.destroyed) await once(socket, 'close')
  }

  it('serves the key a coordinator named, as that coordinator, both ways', async () => {
    const socket = await connectDataChannel(target(), coordinatorKey)
    while (sessions.length === 0) await new Promise(resolve => setTimeout(resolve, 5))
    const session = sessions.shift()
    assert.ok(session !== undefined)
    assert.ok(session.coordinator.equals(coordinator))
    socket.write('ping')
    const [request] = await once(session.socket, 'data') as [Buffer]
    assert.equal(request.toString(), 'ping')
    session.socket.write('pong')
    const [answer] = await once(socket, 'data') as [Buffer]
    assert.equal(answer.toString(), 'pong')
    socket.destroy()
    session.socket.destroy()
  })

  it('refuses a key that no coordinator named, and forgets a coordinator\'s older key', async () => {
    const stranger = await createChannelIdentity()
    const refused = refusals.length
    // TLS 1.3 finishes the client's side before the server has checked its certificate: the refusal is a close.
    const socket = await connectDataChannel(target(), stranger)
    socket.on('error', () => {})
    await endedByWorker(socket)
    const newer = await createChannelIdentity()
    server.admit(coordinator, newer.sha256)
    const old = await connectDataChannel(target(), coordinatorKey)
    old.on('error', () => {})
    await endedByWorker(old)
    assert.equal(refusals.length, refused + 2)
    assert.match(refusals.at(-1) ?? '', /no coordinator named/)
    server.admit(coordinator, coordinatorKey.sha256)
  })

  it('rejects a server whose certificate is not the one the worker named', async () => {
    await assert.rejects(connectDataChannel({ ...target(), sha256: (await createChannelIdentity()).sha256 }, coordinatorKey), (err: Error) => {
      assert.ok(err instanceof RpcDataChannelError)
      assert.match(err.message, /certificate other than the one the worker named/)
      return true
    })
  })

  // Loopback only (tests listen on no other address); the wildcards '0.0.0.0' and '::' go together the same way.
  it('listens on every host of the node, IPv4 and IPv6, on one port', async (t) => {
    const both = await DataChannelServer.listen({ hosts: ['127.0.0.1', '::1'], port: 0, identity: await createChannelIdentity(), maxSessions: 1, onSession: socket => { socket.destroy() }, onRefused: () => {} }).catch((err: NodeJS.ErrnoException) => {
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
        const socket = await connectDataChannel({ host, port: both.port, sha256: both.sha256 }, coordinatorKey).catch(() => undefined)
        assert.ok(socket !== undefined, `reachable on ${host}`)
        socket.on('error', () => {})
        socket.destroy()
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
    await assert.rejects(connectDataChannel({ ...target(), port }, coordinatorKey), RpcDataChannelError)
  })

  it('drops connections beyond its bound at once, closes silent ones after the handshake timeout, then serves the coordinator again', async () => {
    const count = (reason: string): number => reasons.filter(r => r === reason).length
    const handshakesBefore = count('tls-handshake')
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
      assert.equal(count('too-many-connections'), 1)
      await assert.rejects(connectDataChannel(target(), coordinatorKey), RpcDataChannelError)
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
    let socket: TLSSocket | undefined
    for (let tries = 1; socket === undefined; tries++) {
      socket = await connectDataChannel(target(), coordinatorKey).catch(err => {
        if (tries === 50) throw err
        return undefined
      })
      if (socket === undefined) await new Promise(resolve => setTimeout(resolve, 20))
    }
    socket.on('error', () => {})
    while (sessions.length === 0) await new Promise(resolve => setTimeout(resolve, 5))
    socket.destroy()
    sessions.shift()?.socket.destroy()
  })

  it('reads no more than its read-ahead window while the receiver does not hand data on', async () => {
    const socket = await connectDataChannel(target(), coordinatorKey)
    // Destroyed with data still unsent at the end: the far end may reset it first.
    socket.on('error', () => {})
    while (sessions.length === 0) await new Promise(resolve => setTimeout(resolve, 5))
    const session = sessions.shift()
    assert.ok(session !== undefined)
    const end = new SocketTunnelEnd(session.socket)
    let arrived = 0
    end.onData(parts => { for (const part of parts) arrived += part.byteLength })
    // Window after window until the sender's writes back up: first the kernels' socket buffers
    // fill, which autotuning may grow to tens of MiB.
    const block = Buffer.alloc(TUNNEL_WINDOW_BYTES)
    let written = 0
    while (socket.writableLength === 0 && written < 64 * 1024 * 1024) {
      socket.write(block)
      written += block.byteLength
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    assert.ok(socket.writableLength > 0, `the sender is held back (${written} bytes written)`)
    assert.ok(arrived >= TUNNEL_WINDOW_BYTES && arrived < TUNNEL_WINDOW_BYTES + 256 * 1024, `read ${arrived} bytes ahead`)
    // Handed on, the rest follows.
    let released = 0
    while (arrived < written) {
      end.release(arrived - released)
      released = arrived
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    assert.equal(arrived, written)
    socket.destroy()
    session.socket.destroy()
  })
})
