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
import type { AddressInfo } from 'node:net'
import { connect as connectTls, createServer, type Server, type TLSSocket } from 'node:tls'
import { certificateSha256, type ChannelIdentity } from './channel-identity.js'
import { RpcDataChannelError } from './errors.js'
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

export interface DataChannelServerInit {
  /** the hosts the worker's libp2p listens on: the channel listens where the node already does */
  hosts: string[]
  /** the port to listen on, on every host; 0 picks a free one (the first host's) */
  port: number
  identity: ChannelIdentity
  /** at most this many open sessions per coordinator, as for tunnel streams */
  maxSessions: number
  /** a session from `coordinator`, whose key the client proved; must listen for the socket's errors before it returns */
  onSession: (socket: TLSSocket, coordinator: PeerId) => void
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
  readonly #sessions = new Map<string, Set<TLSSocket>>()
  #port = 0

  private constructor (init: DataChannelServerInit) {
    this.#init = init
    this.#servers = init.hosts.map(() => createServer({
      ...TLS_OPTIONS,
      key: init.identity.key,
      cert: init.identity.cert,
      // Asked for, then checked by fingerprint: no CA vouches for these certificates.
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: CHANNEL_HANDSHAKE_MS,
      noDelay: true
    }, socket => { this.#accept(socket) })
      .on('tlsClientError', (err, socket) => {
        // Node.js reports a handshake that timed out but leaves its connection open.
        socket.destroy()
        init.onRefused('tls-handshake', `a failed TLS handshake (${err.message})`)
      })
      .on('drop', () => { init.onRefused('too-many-connections', `a connection beyond the channel's ${init.maxSessions + CHANNEL_PENDING_CONNECTIONS} open ones`) }))
    for (const server of this.#servers) server.maxConnections = init.maxSessions + CHANNEL_PENDING_CONNECTIONS
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

  #accept (socket: TLSSocket): void {
    const cert = socket.getPeerX509Certificate()
    const coordinator = cert === undefined ? undefined : this.#admitted.get(certificateSha256(cert))
    if (coordinator === undefined) {
      this.#init.onRefused('not-coordinator', cert === undefined ? 'a client without a certificate' : 'a client whose certificate no coordinator named')
      socket.destroy()
      return
    }
    const key = coordinator.toString()
    const open = this.#sessions.get(key) ?? new Set()
    if (open.size >= this.#init.maxSessions) {
      this.#init.onRefused('too-many-sessions', `coordinator ${key} already has ${open.size} sessions open`)
      socket.destroy()
      return
    }
    open.add(socket)
    this.#sessions.set(key, open)
    socket.once('close', () => {
      open.delete(socket)
      if (open.size === 0) this.#sessions.delete(key)
    })
    this.#init.onSession(socket, coordinator)
  }

  /** Stops listening and ends every session. */
  async close (): Promise<void> {
    for (const open of this.#sessions.values()) {
      for (const socket of open) socket.destroy()
    }
    await Promise.all(this.#servers.map(async server => {
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    }))
  }
}

/**
 * Coordinator: opens a session on a worker's data channel, presenting `identity` and
 * accepting only the certificate the worker named. Rejects with RpcDataChannelError when the
 * worker cannot be reached, or answers with another key, within CHANNEL_HANDSHAKE_MS.
 */
export async function connectDataChannel (target: DataChannelTarget, identity: ChannelIdentity): Promise<TLSSocket> {
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
        fail('it presented a certificate other than the one the worker named over libp2p')
        return
      }
      clearTimeout(timer)
      // The caller listens for errors from here on (SocketTunnelEnd), before any can be emitted.
      socket.off('error', onError)
      resolve(socket)
    })
  })
}
