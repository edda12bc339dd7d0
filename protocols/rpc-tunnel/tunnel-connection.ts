import type { Connection, Logger, PeerId, PeerStore, Stream } from '@libp2p/interface'
import type { ConnectionManager } from '@libp2p/interface-internal'
import type { Multiaddr } from '@multiformats/multiaddr'

/** How long a dial of a worker's QUIC address may take before the tunnel stream goes over another connection. */
export const QUIC_DIAL_MS = 2000

/** After a QUIC dial failed (UDP blocked, say), how long the tunnel to that worker uses other connections before trying QUIC again. */
export const QUIC_RETRY_MS = 5 * 60_000

function isQuic (addr: Multiaddr): boolean {
  return addr.toString().includes('/quic')
}

/**
 * Picks the connection a tunnel stream to a worker opens on: QUIC where the worker can be
 * reached over it, since a decode step's round trip costs less there (`mesh bench tunnel`);
 * otherwise whatever connection libp2p has or makes (TCP where QUIC is blocked). A QUIC
 * connection this dials is an ordinary libp2p connection: the gater and the membership
 * handshake apply to it as to any other, and the worker's bridge admits the coordinator by
 * its certificate whatever the connection.
 */
export class TunnelConnections {
  readonly #connectionManager: ConnectionManager
  readonly #peerStore: PeerStore
  readonly #log: Logger
  /** when each worker's QUIC dial last failed */
  readonly #quicFailedAt = new Map<string, number>()

  constructor (connectionManager: ConnectionManager, peerStore: PeerStore, log: Logger) {
    this.#connectionManager = connectionManager
    this.#peerStore = peerStore
    this.#log = log
  }

  /** Opens a `protocol` stream to `worker`, over QUIC when it can. */
  async openStream (worker: PeerId, protocol: string, signal: AbortSignal): Promise<Stream> {
    const connection = await this.#quicConnection(worker, signal)
    if (connection !== undefined) return await connection.newStream(protocol, { signal })
    return await this.#connectionManager.openStream(worker, protocol, { signal })
  }

  async #quicConnection (worker: PeerId, signal: AbortSignal): Promise<Connection | undefined> {
    const open = this.#connectionManager.getConnections(worker).find(c => c.status === 'open' && isQuic(c.remoteAddr))
    if (open !== undefined) return open
    const key = worker.toString()
    const failedAt = this.#quicFailedAt.get(key)
    if (failedAt !== undefined && Date.now() - failedAt < QUIC_RETRY_MS) return undefined
    const addrs = (await this.#peerStore.get(worker).catch(() => undefined))?.addresses.map(a => a.multiaddr).filter(isQuic) ?? []
    if (addrs.length === 0) return undefined
    try {
      const target = addrs.map(addr => addr.getComponents().some(c => c.name === 'p2p') ? addr : addr.encapsulate(`/p2p/${key}`))
      const connection = await this.#connectionManager.openConnection(target, { force: true, signal: AbortSignal.any([signal, AbortSignal.timeout(QUIC_DIAL_MS)]) })
      this.#quicFailedAt.delete(key)
      return isQuic(connection.remoteAddr) ? connection : undefined
    } catch (err) {
      if (signal.aborted) throw err
      this.#quicFailedAt.set(key, Date.now())
      this.#log('cannot reach worker %p over QUIC (%s); its tunnel streams use its other connections for %d s', worker, (err as Error).message, QUIC_RETRY_MS / 1000)
      return undefined
    }
  }
}
