// The data channel's native TLS addon (protocols/rpc-tunnel/native-tls/) for this process:
// compiled on first use by the system's C compiler against the running node's headers, then
// loaded once. Where either is missing the channel runs on Node's TLS, which works alike on
// the wire but costs more per message, so the reason is kept for the log.
import { buildCLibrary } from '../engine/c-library.js'
import { loadNativeTls, nativeTlsBuildKey, NATIVE_TLS_SOURCE, nodeHeadersDir, type NativeTlsAddon } from '../protocols/rpc-tunnel/native-tls/addon.js'

/** The addon, or why this process runs the data channel on Node's TLS. */
export type DataChannelTls = { addon: NativeTlsAddon } | { addon: undefined, why: string }

let loaded: DataChannelTls | undefined

/** Builds (once per node version) and loads the data channel's native TLS addon. */
export function dataChannelTls (): DataChannelTls {
  loaded ??= load()
  return loaded
}

function load (): DataChannelTls {
  // It uses Linux's socket flags (MSG_NOSIGNAL) and is linked the ELF way.
  if (process.platform !== 'linux') return { addon: undefined, why: `it is built on Linux only, not on ${process.platform}` }
  const headers = nodeHeadersDir()
  if (headers === undefined) return { addon: undefined, why: `the node headers (node_api.h, openssl/ssl.h) are not installed next to ${process.execPath}` }
  try {
    const path = buildCLibrary({ source: NATIVE_TLS_SOURCE, name: 'native-tls', args: [`-I${headers}`], key: nativeTlsBuildKey() })
    return { addon: loadNativeTls(path) }
  } catch (err) {
    return { addon: undefined, why: (err as Error).message }
  }
}
