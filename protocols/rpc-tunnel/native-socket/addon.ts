// The tunnel's native socket addon (native-socket.c): what it exports, where its source is, and
// how it is compiled and loaded. The node layer builds it (engine/c-library.ts) and hands it to
// the tunnel service; where it cannot be built, the tunnel runs on Node's sockets and TLS.
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** A TLS context: a key and certificate, as client or server (opaque). */
export type NativeTlsContext = object & { readonly __nativeTlsContext: unique symbol }
/** One session over a TCP socket, TLS or plain (opaque). */
export type NativeSocketHandle = object & { readonly __nativeSocketHandle: unique symbol }

/** What a session reports, as native-socket.c's enum event_kind numbers it. */
export const NativeSocketEvent = {
  HANDSHAKE: 0,
  DATA: 1,
  END: 2,
  DRAINED: 3,
  ERROR: 4,
  FINISHED: 5,
  REFUSED: 6
} as const

/** Why a relay stopped (EVENT_REFUSED's first value), as rpc-relay.h's enum rpc_refusal numbers it. */
export const NativeRelayRefusal = {
  COMMAND: 1,
  SIZE: 2,
  TOO_LARGE: 3,
  UNEXPECTED_RESPONSE: 4,
  IDLE_READ_TIMEOUT: 5,
  STALLED: 6
} as const

/** Which end of the tunnel a relay runs on, as native-socket.c's enum relay_mode numbers it. */
export const NativeRelayMode = {
  WORKER: 0,
  COORDINATOR: 1
} as const

/**
 * Numbers per finished command in relayRecords(): command, request bytes, response bytes, and in
 * seconds of one monotonic clock the request's start and end and the command's end.
 */
export const RELAY_RECORD_FIELDS = 6

/** Called on the event loop with each event of a session (see native-socket.c). */
export type NativeSocketListener = (kind: number, value: unknown, code: string | undefined) => void

/** The addon's exports. */
export interface NativeSocketAddon {
  createContext: (keyPem: string, certPem: string, server: boolean) => NativeTlsContext
  /** starts a session on a duplicate of the connected TCP socket `fd`: TLS with `context`, plain where it is null */
  open: (context: NativeTlsContext | null, fd: number, server: boolean, listener: NativeSocketListener) => NativeSocketHandle
  /** sends `data` (encrypted on a TLS session), an array of at most 16 in one go; returns the bytes still waiting for the socket */
  write: (session: NativeSocketHandle, data: Uint8Array | Uint8Array[]) => number
  /** resuming may emit events before it returns */
  setReading: (session: NativeSocketHandle, reading: boolean) => void
  end: (session: NativeSocketHandle) => void
  destroy: (session: NativeSocketHandle) => void
  /**
   * from the next turn of the loop, relays between a data channel session and the local
   * connection's plain session without JavaScript, checking requests against the tables (256
   * entries each; fixedBytes -1 where any size goes); see native-socket.c
   */
  relay: (channel: NativeSocketHandle, local: NativeSocketHandle, mode: number, maxMessageBytes: number, accepted: Uint8Array, fixedBytes: Float64Array, withResponse: Uint8Array, timeoutMs: number) => void
  /** the commands a relay finished since the last call, RELAY_RECORD_FIELDS numbers each */
  relayRecords: (channel: NativeSocketHandle) => Float64Array | undefined
}

/** The addon's C sources and the headers they share. */
export const NATIVE_SOCKET_SOURCES: readonly string[] = ['native-socket.c', 'session-relay.c', 'rpc-relay.c', 'session.h', 'rpc-relay.h']
  .map(name => fileURLToPath(new URL(`../../../../protocols/rpc-tunnel/native-socket/${name}`, import.meta.url)))

/** The running node's C headers (node_api.h, uv.h and its OpenSSL's), undefined where they are not installed. */
export function nodeHeadersDir (): string | undefined {
  const dir = join(dirname(process.execPath), '..', 'include', 'node')
  return existsSync(join(dir, 'node_api.h')) && existsSync(join(dir, 'openssl', 'ssl.h')) ? dir : undefined
}

/**
 * What the addon is built against besides its source: the node binary's ABI and its OpenSSL,
 * whose symbols the addon uses (a build for another node is rebuilt, not loaded).
 */
export function nativeSocketBuildKey (): string {
  return `${process.version} ${process.arch} openssl ${process.versions.openssl}`
}

/** Loads the compiled addon at `path`. */
export function loadNativeSocket (path: string): NativeSocketAddon {
  const module = { exports: {} as NativeSocketAddon }
  process.dlopen(module, path)
  return module.exports
}
