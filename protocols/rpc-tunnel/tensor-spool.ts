import { open, rm, type FileHandle } from 'node:fs/promises'

/**
 * Parts gathered into one write: a tensor's data arrives in parts of up to 64 KiB, and every
 * write is a trip through libuv's pool (one thread in a mesh process).
 */
const WRITE_BATCH_BYTES = 1024 * 1024

/** What all the spools of one tensor cache hold in memory waiting for the disk, and the most they may. */
export interface SpoolBacklog {
  bytes: number
  readonly maxBytes: number
}

/**
 * One tensor's data written to a file as it passes through the worker bridge, in order, without
 * hashing it: the weights reach rpc-server at the speed of the link while the disk keeps up in
 * the background. The parts are kept (not copied) until written; a spool whose tensor cache has
 * more than its backlog's most waiting gives up (the tensor is sent whole again at the next load)
 * rather than hold the load back or fill the memory.
 *
 * Nothing here throws: a spool that cannot write only ends without its data.
 */
export class TensorSpool {
  readonly path: string
  readonly #backlog: SpoolBacklog
  readonly #handle: Promise<FileHandle | undefined>
  /** the writes so far, in order; never rejects */
  #written: Promise<void>
  #batch: Uint8Array[] = []
  #batchBytes = 0
  #bytes = 0
  #failed = false

  /** `folder`: resolves once the file's folder exists */
  constructor (path: string, backlog: SpoolBacklog, folder: Promise<void>) {
    this.path = path
    this.#backlog = backlog
    this.#handle = folder.then(async () => await open(path, 'w', 0o600)).catch(() => {
      this.#failed = true
      return undefined
    })
    this.#written = this.#handle.then(() => {})
  }

  /** Bytes of data given so far. */
  get bytes (): number {
    return this.#bytes
  }

  /** Takes the next part of the data (kept as it is until written). */
  add (part: Uint8Array): void {
    if (this.#failed) return
    if (this.#backlog.bytes + part.byteLength > this.#backlog.maxBytes) {
      this.#giveUp()
      return
    }
    this.#batch.push(part)
    this.#batchBytes += part.byteLength
    this.#bytes += part.byteLength
    this.#backlog.bytes += part.byteLength
    if (this.#batchBytes >= WRITE_BATCH_BYTES) this.#flush()
  }

  /**
   * Writes what is left and closes the file. True when the file holds all the data given;
   * otherwise the file is removed.
   */
  async close (): Promise<boolean> {
    this.#flush()
    await this.#written
    const handle = await this.#handle
    await handle?.close().catch(() => { this.#failed = true })
    if (this.#failed) await rm(this.path, { force: true }).catch(() => {})
    return !this.#failed
  }

  /** Stops: the data so far is not wanted (its request never ended). */
  async discard (): Promise<void> {
    this.#giveUp()
    await this.close()
  }

  #giveUp (): void {
    this.#failed = true
    this.#backlog.bytes -= this.#batchBytes
    this.#batch = []
    this.#batchBytes = 0
  }

  #flush (): void {
    if (this.#batchBytes === 0) return
    const batch = this.#batch
    const bytes = this.#batchBytes
    this.#batch = []
    this.#batchBytes = 0
    this.#written = this.#written.then(async () => {
      const handle = await this.#handle
      if (!this.#failed && handle !== undefined) await handle.writev(batch)
    }).catch(() => {
      this.#failed = true
    }).finally(() => {
      this.#backlog.bytes -= bytes
    })
  }
}
