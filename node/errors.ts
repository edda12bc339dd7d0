/** The data dir is missing, incomplete or unreadable; the message says which file and what to do. */
export class DataDirError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'DataDirError'
  }
}

/** `mesh init` found an existing cluster and was not told to replace it. */
export class ClusterExistsError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ClusterExistsError'
  }
}

/** A certificate or a CA-signed document failed validation. `reason` is a metric label. */
export class CertificateError extends Error {
  readonly reason: string
  constructor (message: string, reason: string) {
    super(message)
    this.name = 'CertificateError'
    this.reason = reason
  }
}

/** Two nodes cannot work together: their llama.cpp builds or feature sets differ. */
export class IncompatibleNodeError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'IncompatibleNodeError'
  }
}

/** An invite string is malformed, unknown, expired or already used. */
export class InviteError extends Error {
  readonly reason: string
  constructor (message: string, reason: string) {
    super(message)
    this.name = 'InviteError'
    this.reason = reason
  }
}

/** The remote node refused our auth handshake; the message is the remote's reason. */
export class AuthRefusedError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'AuthRefusedError'
  }
}

/** A stream arrived from a peer that has not presented a valid certificate. */
export class UnauthenticatedPeerError extends Error {
  constructor (peer: string) {
    super(`peer ${peer} has not presented a valid cluster certificate`)
    this.name = 'UnauthenticatedPeerError'
  }
}

/** No node answers on the control socket of the data dir. */
export class NodeNotRunningError extends Error {
  constructor (dataDir: string, hint = 'start one with "mesh start"') {
    super(`no running llmesh node found for data dir ${dataDir}; ${hint}`)
    this.name = 'NodeNotRunningError'
  }
}

/** The running node refused or failed a control request. */
export class ControlRequestError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ControlRequestError'
  }
}

/** `mesh key revoke` named a key that does not exist (or the default key, which cannot be revoked). */
export class ApiKeyNotFoundError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ApiKeyNotFoundError'
  }
}

/** The audit ledger's hash chain does not verify; the message names the first bad record. */
export class AuditLedgerError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'AuditLedgerError'
  }
}
