import type { AddressInfo, Server, Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'

/** A TCP server of a bench on 127.0.0.1 and how to stop it. */
export interface LoopbackServer {
  port: number
  /** ends every connection `sockets` holds, then closes the server */
  close: () => Promise<void>
}

/** Listens on 127.0.0.1 on a port the kernel picks; `sockets` is the set the server's handler keeps its open connections in. */
export async function listenOnLoopback (server: Server, sockets: Set<Socket>): Promise<LoopbackServer> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port: 0 }, resolve)
  })
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    }
  }
}

/**
 * A connection handler that pipes each client into a new connection from `connectUpstream`,
 * both ways, as a plain Node.js TCP forwarder would; both ends go into `sockets`.
 */
export function relayHandler (connectUpstream: () => Socket | TLSSocket, sockets: Set<Socket>): (client: Socket) => void {
  return client => {
    const upstream = connectUpstream()
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.once('close', () => sockets.delete(socket))
      socket.on('error', () => { client.destroy(); upstream.destroy() })
    }
    client.pipe(upstream)
    upstream.pipe(client)
  }
}
