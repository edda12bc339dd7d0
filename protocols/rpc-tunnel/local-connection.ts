import { connect, type Socket } from 'node:net'
import { NativeSocketEnd } from './native-socket/native-socket-end.js'
import { SocketTunnelEnd, type LocalEnd } from './tunnel-end.js'
import type { NativeSocketAddon } from './native-socket/addon.js'

// The local connections of a session, to llama-server (coordinator) and to rpc-server (worker),
// are moved by the native addon where the node has it: on these sockets Node's stream machinery
// ran for every chunk both ways, a good part of the tunnel's round trip (`mesh bench tunnel`),
// and a profile of weight loading found the coordinator busiest in their writes. Elsewhere they
// are Node sockets, alike to the peers.

/**
 * The connection llama-server made to a coordinator's listener: `socket` as the listener's
 * server accepted it (with pauseOnConnect where `native` is given; see localServerOptions).
 */
export function acceptedLocalEnd (socket: Socket, native: NativeSocketAddon | undefined): LocalEnd {
  return native === undefined ? new SocketTunnelEnd(socket) : NativeSocketEnd.local(native, socket, true)
}

/** How a listener for local connections accepts them, for acceptedLocalEnd. */
export function localServerOptions (native: NativeSocketAddon | undefined): { noDelay: true, pauseOnConnect: boolean } {
  // Node must read nothing of a socket the native addon takes over.
  return { noDelay: true, pauseOnConnect: native !== undefined }
}

/** Connects to rpc-server on 127.0.0.1:`port`. */
export async function connectLocal (port: number, native: NativeSocketAddon | undefined): Promise<LocalEnd> {
  const socket = await new Promise<Socket>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, noDelay: true })
    // Paused before it connects, Node reads nothing of it: the native addon may take it over.
    if (native !== undefined) socket.pause()
    socket.once('connect', () => {
      socket.off('error', reject)
      resolve(socket)
    })
    socket.once('error', reject)
  })
  return native === undefined ? new SocketTunnelEnd(socket) : NativeSocketEnd.local(native, socket, false)
}
