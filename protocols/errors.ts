/**
 * Typed errors for the llmesh wire framing. Each carries a short `reason` that is used as
 * a metric label, so operators can tell a wrong magic from an oversized payload.
 */
export class FramingError extends Error {
  readonly reason: string
  constructor (message: string, reason: string) {
    super(message)
    this.name = 'FramingError'
    this.reason = reason
  }
}

/** The first four bytes of a frame are not the llmesh magic: the peer speaks something else. */
export class FrameMagicError extends FramingError {
  constructor (got: number) {
    super(`frame magic 0x${got.toString(16).padStart(8, '0')} is not llmesh's; the peer does not speak this protocol`, 'magic')
    this.name = 'FrameMagicError'
  }
}

/** The frame names a framing version this build does not know. */
export class FrameVersionError extends FramingError {
  constructor (got: number, expected: number) {
    super(`frame version ${got} is not supported (this node speaks version ${expected}); run the same llmesh version on every node`, 'version')
    this.name = 'FrameVersionError'
  }
}

/** The frame's message type is not one the protocol defines. */
export class FrameTypeError extends FramingError {
  constructor (got: number, protocol: string) {
    super(`message type ${got} is not defined by ${protocol}`, 'type')
    this.name = 'FrameTypeError'
  }
}

/** The frame announces more payload than the protocol allows. */
export class FrameTooLargeError extends FramingError {
  constructor (length: bigint, max: number, protocol: string) {
    super(`payload of ${length} bytes exceeds the ${max}-byte limit of ${protocol}`, 'oversized')
    this.name = 'FrameTooLargeError'
  }
}

/** The stream ended inside a frame: the sender stopped or was cut off mid-message. */
export class FrameTruncatedError extends FramingError {
  constructor (protocol: string) {
    super(`stream of ${protocol} ended in the middle of a frame`, 'truncated')
    this.name = 'FrameTruncatedError'
  }
}

/** A frame's payload is not a well-formed message of the type it claims to be. */
export class MessageSchemaError extends FramingError {
  constructor (message: string) {
    super(message, 'schema')
    this.name = 'MessageSchemaError'
  }
}

/** The stream ended before the expected message arrived. */
export class UnexpectedEndError extends FramingError {
  constructor (protocol: string) {
    super(`the peer closed the ${protocol} stream before answering`, 'ended')
    this.name = 'UnexpectedEndError'
  }
}

/** The peer did not complete a protocol exchange in time. */
export class HandshakeTimeoutError extends FramingError {
  constructor (protocol: string, timeoutMs: number) {
    super(`the ${protocol} exchange did not complete within ${timeoutMs} ms`, 'timeout')
    this.name = 'HandshakeTimeoutError'
  }
}
