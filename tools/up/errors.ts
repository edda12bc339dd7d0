/** A node of the local cluster exited, or never became ready, while `mesh up` was starting it. */
export class NodeStartError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'NodeStartError'
  }
}

/** The coordinator exited while the local cluster was serving. */
export class CoordinatorExitedError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'CoordinatorExitedError'
  }
}

/** The API port `mesh up` was asked to serve on is taken by another program. */
export class ApiPortInUseError extends Error {
  constructor (port: number) {
    super(`port ${port} on 127.0.0.1 is already in use; stop the program using it or pass another port with --api-port`)
    this.name = 'ApiPortInUseError'
  }
}

/** The API answered, but not as it must for the key `mesh up` prints. */
export class ApiCheckError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ApiCheckError'
  }
}
