import type { Connection, Logger, PeerId, PeerStore, Stream } from '@libp2p/interface'
import type { ConnectionManager } from '@libp2p/interface-internal'
import type { Multiaddr } from '@multiformats/multiaddr'

/** How long a dial of a worker's TCP address may take before the tunnel stream goes over another connection. */
export const TCP_DIAL_MS = 2000

/** After a TCP dial failed, how long the tunnel to that worker uses other connections before trying TCP again. */
export const TCP_RETRY_MS = 5 * 60_000

function isTcp (addr: Multiaddr): boolean {
  return addr.getComponents().some(c => c.name === 'tcp')
}

/**
 * Picks the connection a tunnel stream to a worker opens on: TCP (Noise, yamux) where the
 * worker can be reached over it, since weights cross it several times faster than over QUIC
 * and a decode step's round trip costs the same (`mesh bench tunnel --transport tcp|quic`);
 * otherwise whatever connection libp2p has or makes (QUIC where TCP cannot reach the worker).
 * A connection this dials is an ordinary libp2p connection: the gater and the membership
 * handshake apply to it as to any other, and the worker's bridge admits the coordinator by
 * its certificate whatever the connection.
 */
export class TunnelConnections {
  readonly #connectionManager: ConnectionManager
  readonly #peerStore: PeerStore
  readonly #log: Logger
  /** when each worker's TCP dial last failed */
  readonly #tcpFailedAt = new Map<string, number>()

  constructor (connectionManager: ConnectionManager, peerStore: PeerStore, log: Logger) {
    this.#connectionManager = connectionManager
    this.#peerStore = peerStore
    this.#log = log
  }

  /** Opens a `protocol` stream to `worker`, over TCP when it can. */
  async openStream (worker: PeerId, protocol: string, signal: AbortSignal): Promise<Stream> {
    const connection = await this.#tcpConnection(worker, signal)
    if (connection !== undefined) return await connection.newStream(protocol, { signal })
    return await this.#connectionManager.openStream(worker, protocol, { signal })
  }

  async #tcpConnection (worker: PeerId, signal: AbortSignal): Promise<Connection | undefined> {
    const open = this.#connectionManager.getConnections(worker).find(c => c.status === 'open' && isTcp(c.remoteAddr))
    if (open !== undefined) return open
    const key = worker.toString()
    const failedAt = this.#tcpFailedAt.get(key)
    if (failedAt !== undefined && Date.now() - failedAt < TCP_RETRY_MS) return undefined
    const addrs = (await this.#peerStore.get(worker).catch(() => undefined))?.addresses.map(a => a.multiaddr).filter(isTcp) ?? []
    if (addrs.length === 0) return undefined
    try {
      const target = addrs.map(addr => addr.getComponents().some(c => c.name === 'p2p') ? addr : addr.encapsulate(`/p2p/${key}`))
      const connection = await this.#connectionManager.openConnection(target, { force: true, signal: AbortSignal.any([signal, AbortSignal.timeout(TCP_DIAL_MS)]) })
      this.#tcpFailedAt.delete(key)
      return isTcp(connection.remoteAddr) ? connection : undefined
    } catch (err) {
      if (signal.aborted) throw err
      this.#tcpFailedAt.set(key, Date.now())
      this.#log('cannot reach worker %p over TCP (%s); its tunnel streams use its other connections for %d s', worker, (err as Error).message, TCP_RETRY_MS / 1000)
      return undefined
    }
  }
}
