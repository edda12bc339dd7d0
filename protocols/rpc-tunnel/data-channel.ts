// The tunnel's data channel: ggml-rpc sessions over TLS 1.3 straight between coordinator and
// worker, beside libp2p instead of inside it. libp2p stays the control path: the coordinator
// offers its certificate's fingerprint in the plan's cap exchange, on a libp2p stream the
// worker admits only from the cluster's coordinator, and the worker answers with its port and
// its own certificate's fingerprint. Each side then accepts on the channel only the key the
// other named there, so the channel is exactly as authenticated as that stream.
//
// Why: a decode step's round trip through TCP+Noise+yamux costs about 1 ms after a pause,
// against 0.3-0.4 ms for a plain relay, and bulk weights cross it at a fraction of the
// link's rate (`mesh bench tunnel`); a kernel-backed TLS socket costs about what the relay does.
import { connect as connectTcp, createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { connect as connectTls, createServer as createTlsServer, type TLSSocket } from 'node:tls'
import { certificateSha256, type ChannelIdentity } from './channel-identity.js'
import { RpcDataChannelError } from './errors.js'
import { NativeSocketEnd } from './native-socket/native-socket-end.js'
import { SocketTunnelEnd, type TunnelEnd } from './tunnel-end.js'
import type { NativeSocketAddon, NativeTlsContext } from './native-socket/addon.js'
import type { PeerId } from '@libp2p/interface'

/** Where a worker's data channel is, as the worker's answer to the cap exchange says. */
export interface DataChannelTarget {
  host: string
  port: number
  /** the worker's certificate fingerprint (channel-identity.ts) */
  sha256: string
}

/** How long a TLS handshake on the data channel may take. */
export const CHANNEL_HANDSHAKE_MS = 5000

/**
 * Connections a channel listener holds open besides its sessions: clients still in their TLS
 * handshake, or not yet turned away. Anyone on the network can connect to the port, so this
 * bounds what a flood of connections costs the worker (memory and descriptors, each held up
 * to CHANNEL_HANDSHAKE_MS); beyond it the kernel's connections are dropped at once, and the
 * coordinator's sessions, if such a flood shuts them out, go in tunnel streams instead.
 */
export const CHANNEL_PENDING_CONNECTIONS = 32

// Not half-open: a session is over once either side ends it (llama-server and rpc-server have
// nothing to say after the other end left), and a client that leaves mid-handshake is gone.
const TLS_OPTIONS = { minVersion: 'TLSv1.3' } as const

/**
 * The channel's TLS in native code (native-socket/): the same TLS 1.3 on the wire, so either
 * side may run it or Node's TLS, but a decode step's messages and the weights cross it at a
 * fraction of the cost. Without it (no C compiler or node headers) the channel runs on Node's TLS.
 */
export interface NativeChannelTls {
  addon: NativeSocketAddon
  /** this side's key and certificate, as client (coordinator) or server (worker) */
  context: NativeTlsContext
}

export interface DataChannelServerInit {
  /** the hosts the worker's libp2p listens on: the channel listens where the node already does */
  hosts: string[]
  /** the port to listen on, on every host; 0 picks a free one (the first host's) */
  port: number
  identity: ChannelIdentity
  /** the native socket addon, for the channel's TLS; without it the channel runs on Node's TLS */
  nativeTls?: NativeSocketAddon
  /** at most this many open sessions per coordinator, as for tunnel streams */
  maxSessions: number
  /** a session from `coordinator`, whose key the client proved */
  onSession: (session: TunnelEnd, coordinator: PeerId) => void
  /** a client was turned away: `reason` as a metric label ('not-coordinator', 'tls-handshake', 'too-many-sessions', 'too-many-connections'), `why` in words */
  onRefused: (reason: string, why: string) => void
}

/**
 * Worker: TLS listeners (one port, on every host the node listens on) that require a client
 * certificate and serve only clients whose certificate a coordinator named in a cap exchange.
 */
export class DataChannelServer {
  readonly #servers: Server[]
  readonly #init: DataChannelServerInit
  /** certificate fingerprint -> the coordinator that named it */
  readonly #admitted = new Map<string, PeerId>()
  readonly #sessions = new Map<string, Set<TunnelEnd>>()
  /** aborted by close(): handshakes still running end, and sessions they finish are refused */
  readonly #closing = new AbortController()
  #port = 0

  private constructor (init: DataChannelServerInit) {
    this.#init = init
    const native = init.nativeTls === undefined ? undefined : { addon: init.nativeTls, context: init.nativeTls.createContext(init.identity.key, init.identity.cert, true) }
    this.#servers = init.hosts.map(() => {
      const server = native === undefined ? this.#nodeTlsServer() : createTcpServer({ pauseOnConnect: true, noDelay: true }, socket => { void this.#acceptNative(native, socket) })
      server.maxConnections = init.maxSessions + CHANNEL_PENDING_CONNECTIONS
      return server.on('drop', () => { init.onRefused('too-many-connections', `a connection beyond the channel's ${init.maxSessions + CHANNEL_PENDING_CONNECTIONS} open ones`) })
    })
  }

  #nodeTlsServer (): Server {
    return createTlsServer({
      ...TLS_OPTIONS,
      key: this.#init.identity.key,
      cert: this.#init.identity.cert,
      // Asked for, then checked by fingerprint: no CA vouches for these certificates.
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: CHANNEL_HANDSHAKE_MS,
      noDelay: true
    }, socket => {
      const cert = socket.getPeerX509Certificate()
      this.#admit(cert === undefined ? undefined : certificateSha256(cert), new SocketTunnelEnd(socket))
    }).on('tlsClientError', (err, socket) => {
      // Node.js reports a handshake that timed out but leaves its connection open.
      socket.destroy()
      this.#init.onRefused('tls-handshake', `a failed TLS handshake (${err.message})`)
    })
  }

  // The accepted socket has read nothing (pauseOnConnect): the native session takes it as it is.
  async #acceptNative (native: NativeChannelTls, socket: Socket): Promise<void> {
    let session: NativeSocketEnd
    try {
      session = await NativeSocketEnd.handshake(native.addon, native.context, socket, true, CHANNEL_HANDSHAKE_MS, this.#closing.signal)
    } catch (err) {
      socket.destroy()
      if (!this.#closing.signal.aborted) this.#init.onRefused('tls-handshake', `a failed TLS handshake (${(err as Error).message})`)
      return
    }
    this.#admit(session.peerSha256 === '' ? undefined : session.peerSha256, session)
  }

  /** Listens on `init.hosts`, on the same port (`init.port`, or the first host's pick) on each. */
  static async listen (init: DataChannelServerInit): Promise<DataChannelServer> {
    const channel = new DataChannelServer(init)
    channel.#port = init.port
    try {
      for (const [i, server] of channel.#servers.entries()) {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject)
          const host = init.hosts[i]
          // Both wildcards: '::' would take IPv4 too and collide with '0.0.0.0' on the same port.
          const ipv6Only = host === '::' && init.hosts.includes('0.0.0.0')
          server.listen({ host, port: channel.#port, ipv6Only }, () => {
            server.off('error', reject)
            resolve()
          })
        })
        channel.#port = (server.address() as AddressInfo).port
      }
    } catch (err) {
      await channel.close()
      throw err
    }
    return channel
  }

  get port (): number {
    return this.#port
  }

  get sha256 (): string {
    return this.#init.identity.sha256
  }

  /**
   * Serves sessions to the client holding the key of `certSha256` as `coordinator`'s, instead
   * of the key it named before; returns where the channel is, for the coordinator to be told.
   */
  admit (coordinator: PeerId, certSha256: string): { port: number, sha256: string } {
    for (const [sha256, peer] of this.#admitted) {
      if (peer.equals(coordinator)) this.#admitted.delete(sha256)
    }
    this.#admitted.set(certSha256, coordinator)
    return { port: this.#port, sha256: this.sha256 }
  }

  /** Serves `session` if `peerSha256` is a key a coordinator named, within its sessions' bound. */
  #admit (peerSha256: string | undefined, session: TunnelEnd): void {
    if (this.#closing.signal.aborted) {
      session.abort(this.#closing.signal.reason as Error)
      return
    }
    const coordinator = peerSha256 === undefined ? undefined : this.#admitted.get(peerSha256)
    if (coordinator === undefined) {
      this.#init.onRefused('not-coordinator', peerSha256 === undefined ? 'a client without a certificate' : 'a client whose certificate no coordinator named')
      session.abort(new Error('refused: not a coordinator'))
      return
    }
    const key = coordinator.toString()
    const open = this.#sessions.get(key) ?? new Set()
    if (open.size >= this.#init.maxSessions) {
      this.#init.onRefused('too-many-sessions', `coordinator ${key} already has ${open.size} sessions open`)
      session.abort(new Error('refused: too many sessions'))
      return
    }
    open.add(session)
    this.#sessions.set(key, open)
    session.onClose(() => {
      open.delete(session)
      if (open.size === 0) this.#sessions.delete(key)
    })
    this.#init.onSession(session, coordinator)
  }

  /** Stops listening and ends every session. */
  async close (): Promise<void> {
    this.#closing.abort(new Error('the worker\'s data channel closed: the node is stopping'))
    for (const open of this.#sessions.values()) {
      for (const session of open) session.abort(this.#closing.signal.reason as Error)
    }
    await Promise.all(this.#servers.map(async server => {
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    }))
  }
}

/**
 * Coordinator: opens a session on a worker's data channel, presenting `identity` (or, with
 * `native`, its context) and accepting only the certificate the worker named. Rejects with
 * RpcDataChannelError when the worker cannot be reached, or answers with another key, within
 * CHANNEL_HANDSHAKE_MS.
 */
export async function connectDataChannel (target: DataChannelTarget, identity: ChannelIdentity, native?: NativeChannelTls): Promise<TunnelEnd> {
  return native === undefined ? await connectNodeTls(target, identity) : await connectNativeTls(target, native)
}

async function connectNodeTls (target: DataChannelTarget, identity: ChannelIdentity): Promise<TunnelEnd> {
  const where = `${target.host}:${target.port}`
  return await new Promise((resolve, reject) => {
    const socket = connectTls({ ...TLS_OPTIONS, host: target.host, port: target.port, key: identity.key, cert: identity.cert, rejectUnauthorized: false })
    socket.setNoDelay(true)
    const fail = (why: string): void => {
      clearTimeout(timer)
      socket.destroy()
      reject(new RpcDataChannelError(where, why))
    }
    const timer = setTimeout(() => { fail(`no TLS session within ${CHANNEL_HANDSHAKE_MS} ms`) }, CHANNEL_HANDSHAKE_MS)
    const onError = (err: Error): void => { fail(err.message) }
    socket.once('error', onError)
    socket.once('secureConnect', () => {
      const cert = socket.getPeerX509Certificate()
      if (cert === undefined || certificateSha256(cert) !== target.sha256) {
        fail(NOT_NAMED_CERTIFICATE)
        return
      }
      clearTimeout(timer)
      // SocketTunnelEnd listens for errors from here on, before any can be emitted.
      const session = new SocketTunnelEnd(socket as TLSSocket)
      socket.off('error', onError)
      resolve(session)
    })
  })
}

const NOT_NAMED_CERTIFICATE = 'it presented a certificate other than the one the worker named over libp2p'

async function connectNativeTls (target: DataChannelTarget, native: NativeChannelTls): Promise<TunnelEnd> {
  const where = `${target.host}:${target.port}`
  const started = Date.now()
  const socket = await new Promise<Socket>((resolve, reject) => {
    const socket = connectTcp({ host: target.host, port: target.port, noDelay: true, timeout: CHANNEL_HANDSHAKE_MS })
    const fail = (why: string): void => {
      socket.destroy()
      reject(new RpcDataChannelError(where, why))
    }
    socket.once('error', err => { fail(err.message) })
    socket.once('timeout', () => { fail(`no TCP connection within ${CHANNEL_HANDSHAKE_MS} ms`) })
    socket.once('connect', () => {
      socket.removeAllListeners('error').removeAllListeners('timeout').setTimeout(0)
      resolve(socket)
    })
  })
  let session: NativeSocketEnd
  try {
    session = await NativeSocketEnd.handshake(native.addon, native.context, socket, false, Math.max(1, CHANNEL_HANDSHAKE_MS - (Date.now() - started)))
  } catch (err) {
    throw new RpcDataChannelError(where, (err as Error).message)
  }
  if (session.peerSha256 !== target.sha256) {
    session.abort(new RpcDataChannelError(where, NOT_NAMED_CERTIFICATE))
    throw new RpcDataChannelError(where, NOT_NAMED_CERTIFICATE)
  }
  return session
}
