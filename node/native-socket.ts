// The tunnel's native socket addon (protocols/rpc-tunnel/native-socket/) for this process: the
// data channel's TLS and the local connections to llama-server and rpc-server. Compiled on
// first use by the system's C compiler against the running node's headers, then loaded once.
// Where either is missing the tunnel runs on Node's sockets and TLS, which work alike on the
// wire but cost more per message, so the reason is kept for the log.
import { buildCLibrary } from '../engine/c-library.js'
import { loadNativeSocket, nativeSocketBuildKey, NATIVE_SOCKET_SOURCES, nodeHeadersDir, type NativeSocketAddon } from '../protocols/rpc-tunnel/native-socket/addon.js'

/** The addon, or why this process runs the tunnel on Node's sockets and TLS. */
export type NativeSockets = { addon: NativeSocketAddon } | { addon: undefined, why: string }

let loaded: NativeSockets | undefined

/** Builds (once per node version) and loads the tunnel's native socket addon. */
export function nativeSockets (): NativeSockets {
  loaded ??= load()
  return loaded
}

function load (): NativeSockets {
  // It uses Linux's socket flags (MSG_NOSIGNAL) and is linked the ELF way.
  if (process.platform !== 'linux') return { addon: undefined, why: `it is built on Linux only, not on ${process.platform}` }
  const headers = nodeHeadersDir()
  if (headers === undefined) return { addon: undefined, why: `the node headers (node_api.h, openssl/ssl.h) are not installed next to ${process.execPath}` }
  try {
    const path = buildCLibrary({ sources: NATIVE_SOCKET_SOURCES, name: 'native-socket', args: [`-I${headers}`, '-fvisibility=hidden'], key: nativeSocketBuildKey() })
    return { addon: loadNativeSocket(path) }
  } catch (err) {
    return { addon: undefined, why: (err as Error).message }
  }
}
