/** The membership handshake every connection runs before any other llmesh protocol. */
export const AUTH_PROTOCOL = '/llmesh/auth/1.0.0'

/** Message types of the auth protocol. */
export const AuthMessageType = {
  /** dialer -> listener: build facts plus a certificate or an invite */
  hello: 1,
  /** listener -> dialer: accepted; the listener's certificate, maybe a new one, revocations */
  welcome: 2,
  /** listener -> dialer: refused, with a one-sentence reason */
  refused: 3
} as const

/** Certificates and revocation lists are small; 256 KiB leaves room for long lists. */
export const AUTH_MAX_PAYLOAD_BYTES = 256 * 1024

/** How long a handshake may take end to end. */
export const AUTH_TIMEOUT_MS = 5000
