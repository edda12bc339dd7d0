// The native TLS addon of the data channel (native-tls.c): what it exports, where its source
// is, and how it is compiled and loaded. The node layer builds it (engine/c-library.ts) and
// hands it to the tunnel service; where it cannot be built, the channel runs on Node's TLS.
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** A TLS context: a key and certificate, as client or server (opaque). */
export type NativeTlsContext = object & { readonly __nativeTlsContext: unique symbol }
/** One TLS session over a TCP socket (opaque). */
export type NativeTlsHandle = object & { readonly __nativeTlsHandle: unique symbol }

/** What a session reports, as native-tls.c's enum event_kind numbers it. */
export const NativeTlsEvent = {
  HANDSHAKE: 0,
  DATA: 1,
  END: 2,
  DRAINED: 3,
  ERROR: 4,
  FINISHED: 5
} as const

/** Called on the event loop with each event of a session (see native-tls.c). */
export type NativeTlsListener = (kind: number, value: unknown, code: string | undefined) => void

/** The addon's exports. */
export interface NativeTlsAddon {
  createContext: (keyPem: string, certPem: string, server: boolean) => NativeTlsContext
  /** starts a session on a duplicate of the connected TCP socket `fd` */
  open: (context: NativeTlsContext, fd: number, server: boolean, listener: NativeTlsListener) => NativeTlsHandle
  /** encrypts and sends `data`; returns the bytes still waiting for the socket */
  write: (session: NativeTlsHandle, data: Uint8Array) => number
  /** resuming may emit events before it returns */
  setReading: (session: NativeTlsHandle, reading: boolean) => void
  end: (session: NativeTlsHandle) => void
  destroy: (session: NativeTlsHandle) => void
}

/** The addon's C source. */
export const NATIVE_TLS_SOURCE = fileURLToPath(new URL('../../../../protocols/rpc-tunnel/native-tls/native-tls.c', import.meta.url))

/** The running node's C headers (node_api.h, uv.h and its OpenSSL's), undefined where they are not installed. */
export function nodeHeadersDir (): string | undefined {
  const dir = join(dirname(process.execPath), '..', 'include', 'node')
  return existsSync(join(dir, 'node_api.h')) && existsSync(join(dir, 'openssl', 'ssl.h')) ? dir : undefined
}

/**
 * What the addon is built against besides its source: the node binary's ABI and its OpenSSL,
 * whose symbols the addon uses (a build for another node is rebuilt, not loaded).
 */
export function nativeTlsBuildKey (): string {
  return `${process.version} ${process.arch} openssl ${process.versions.openssl}`
}

/** Loads the compiled addon at `path`. */
export function loadNativeTls (path: string): NativeTlsAddon {
  const module = { exports: {} as NativeTlsAddon }
  process.dlopen(module, path)
  return module.exports
}
