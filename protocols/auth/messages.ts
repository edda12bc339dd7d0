import { parseCertificate, type Certificate } from '../../node/certificate.js'
import { MessageSchemaError } from '../errors.js'
import { intField, stringField } from '../json-message.js'

/** First message of the handshake, sent by the dialer. */
export interface Hello {
  clusterId: string
  llamaCppTag: string
  features: number
  /** a member presents its certificate ... */
  certificate?: Certificate
  /** ... a joiner presents an invite's id and secret instead */
  invite?: { id: string, secret: string }
}

/** The listener's acceptance. */
export interface Welcome {
  /** the listener's llama.cpp tag and feature bits, so the dialer can check it in turn */
  llamaCppTag: string
  features: number
  /** the listener's own certificate, so the dialer can authenticate it in turn */
  certificate: Certificate
  /** the certificate issued to a joiner */
  issued?: Certificate
  /** the CA's latest revocation list known to the listener */
  revocations?: unknown
}

/** The listener's refusal. */
export interface Refused {
  reason: string
}

function certificateField (message: Record<string, unknown>, name: string): Certificate | undefined {
  if (message[name] === undefined) return undefined
  try {
    return parseCertificate(message[name])
  } catch (err) {
    throw new MessageSchemaError(`field "${name}": ${(err as Error).message}`)
  }
}

/** Validates a decoded HELLO. */
export function parseHello (m: Record<string, unknown>): Hello {
  const hello: Hello = { clusterId: stringField(m, 'clusterId', 100), llamaCppTag: stringField(m, 'llamaCppTag', 100), features: intField(m, 'features') }
  hello.certificate = certificateField(m, 'certificate')
  if (m.invite !== undefined) {
    const invite = m.invite as Record<string, unknown>
    if (typeof invite !== 'object' || invite === null) throw new MessageSchemaError('field "invite" must be an object')
    hello.invite = { id: stringField(invite, 'id', 100), secret: stringField(invite, 'secret', 100) }
  }
  return hello
}

/** Validates a decoded WELCOME. */
export function parseWelcome (m: Record<string, unknown>): Welcome {
  const certificate = certificateField(m, 'certificate')
  if (certificate === undefined) throw new MessageSchemaError('field "certificate" is required')
  return { llamaCppTag: stringField(m, 'llamaCppTag', 100), features: intField(m, 'features'), certificate, issued: certificateField(m, 'issued'), revocations: m.revocations }
}

/** Validates a decoded REFUSED. */
export function parseRefused (m: Record<string, unknown>): Refused {
  return { reason: stringField(m, 'reason', 1000) }
}
