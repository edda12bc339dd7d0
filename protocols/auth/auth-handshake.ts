import { AuthRefusedError } from '../../node/errors.js'
import { FramingError, FrameTypeError, HandshakeTimeoutError, UnexpectedEndError } from '../errors.js'
import { FrameReader, writeFrame, type FrameLimits } from '../framing.js'
import { decodeJsonObject, encodeJson } from '../json-message.js'
import { AUTH_MAX_PAYLOAD_BYTES, AUTH_PROTOCOL, AUTH_TIMEOUT_MS, AuthMessageType } from './constants.js'
import { parseHello, parseRefused, parseWelcome, type Hello, type Welcome } from './messages.js'
import type { Connection, Stream, StreamHandler } from '@libp2p/interface'

/** The membership decisions the listener side of the handshake delegates. */
export interface AuthAuthority {
  /**
   * Accepts a dialer's HELLO and returns the WELCOME; throws an Error whose message is the
   * refusal reason. `source` is the dialer's host, by which failed invites are rate-limited.
   */
  accept: (peerId: string, hello: Hello, source: string) => Promise<Welcome>
  /** Told about every refused or failed handshake, so the peer can be disconnected and counted. */
  refused: (connection: Connection, err: Error) => void
}

/** Where bad frames are counted. */
export interface FrameRejectionCounter {
  rejectedFrame: (protocol: string, reason: string) => void
}

const listenerLimits: FrameLimits = { protocol: AUTH_PROTOCOL, types: new Set([AuthMessageType.hello]), maxPayloadBytes: AUTH_MAX_PAYLOAD_BYTES }
const dialerLimits: FrameLimits = { protocol: AUTH_PROTOCOL, types: new Set([AuthMessageType.welcome, AuthMessageType.refused]), maxPayloadBytes: AUTH_MAX_PAYLOAD_BYTES }

function abortOnTimeout (stream: Stream, signal: AbortSignal): () => void {
  const onAbort = (): void => { stream.abort(new HandshakeTimeoutError(AUTH_PROTOCOL, AUTH_TIMEOUT_MS)) }
  signal.addEventListener('abort', onAbort)
  return () => { signal.removeEventListener('abort', onAbort) }
}

const HOST_PROTOCOLS = new Set(['ip4', 'ip6', 'dns', 'dns4', 'dns6'])

// The remote host of a connection; the whole address where it names none (a relay, a socket).
function remoteHost (connection: Connection): string {
  return connection.remoteAddr.getComponents().find(c => HOST_PROTOCOLS.has(c.name))?.value ?? connection.remoteAddr.toString()
}

/** The listener side of /llmesh/auth/1.0.0: one HELLO in, one WELCOME or REFUSED out. */
export function authStreamHandler (authority: AuthAuthority, counter: FrameRejectionCounter): StreamHandler {
  return async (stream, connection) => {
    const signal = AbortSignal.timeout(AUTH_TIMEOUT_MS)
    const stop = abortOnTimeout(stream, signal)
    try {
      const frame = await new FrameReader(stream, listenerLimits).next()
      if (frame === undefined) throw new UnexpectedEndError(AUTH_PROTOCOL)
      const hello = parseHello(decodeJsonObject(frame.payload))
      let welcome: Welcome
      try {
        welcome = await authority.accept(connection.remotePeer.toString(), hello, remoteHost(connection))
      } catch (err) {
        await writeFrame(stream, AuthMessageType.refused, encodeJson({ reason: (err as Error).message }))
        await stream.close().catch(() => {})
        authority.refused(connection, err as Error)
        return
      }
      await writeFrame(stream, AuthMessageType.welcome, encodeJson(welcome))
      await stream.close().catch(() => {})
    } catch (err) {
      // A stalled peer surfaces as whatever the aborted stream throws; count it as a timeout.
      const failure = signal.aborted ? new HandshakeTimeoutError(AUTH_PROTOCOL, AUTH_TIMEOUT_MS) : err as Error
      if (failure instanceof FramingError) counter.rejectedFrame(AUTH_PROTOCOL, failure.reason)
      stream.abort(failure)
      authority.refused(connection, failure)
    } finally {
      stop()
    }
  }
}

/**
 * The dialer side: sends HELLO on a new stream of `connection` and returns the WELCOME.
 * Throws AuthRefusedError with the listener's reason, or a FramingError on bad replies.
 */
export async function requestAdmission (connection: Connection, hello: Hello, counter: FrameRejectionCounter): Promise<Welcome> {
  const signal = AbortSignal.timeout(AUTH_TIMEOUT_MS)
  const stream = await connection.newStream(AUTH_PROTOCOL, { signal })
  const stop = abortOnTimeout(stream, signal)
  try {
    await writeFrame(stream, AuthMessageType.hello, encodeJson(hello), signal)
    const frame = await new FrameReader(stream, dialerLimits).next()
    if (frame === undefined) throw new UnexpectedEndError(AUTH_PROTOCOL)
    const message = decodeJsonObject(frame.payload)
    if (frame.type === AuthMessageType.refused) throw new AuthRefusedError(parseRefused(message).reason)
    if (frame.type !== AuthMessageType.welcome) throw new FrameTypeError(frame.type, AUTH_PROTOCOL)
    const welcome = parseWelcome(message)
    await stream.close().catch(() => {})
    return welcome
  } catch (err) {
    const failure = signal.aborted ? new HandshakeTimeoutError(AUTH_PROTOCOL, AUTH_TIMEOUT_MS) : err as Error
    if (failure instanceof FramingError) counter.rejectedFrame(AUTH_PROTOCOL, failure.reason)
    stream.abort(failure)
    throw failure
  } finally {
    stop()
  }
}
