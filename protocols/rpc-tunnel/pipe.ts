import type { Socket } from 'node:net'
import type { CreditStream } from './credit-stream.js'
import type { StreamMessageEvent } from '@libp2p/interface'

/** How a pipe inspects and times the bytes it carries. */
export interface PipeOptions {
  /** checks bytes from the stream; returns the parts that may reach the socket, throws to close both ends */
  fromStream?: (chunk: Uint8Array) => Uint8Array[]
  /** sees bytes from the socket; returns the parts to send into the stream, throws to close both ends */
  fromSocket?: (chunk: Uint8Array) => Uint8Array[]
  /**
   * Asked after `fromSocket`: true while the socket's bytes so far may wait for what follows
   * (a message is incomplete, or only one-way commands are waiting). The pipe then holds
   * them back, up to COALESCE_BYTES or until the socket is quiet for HOLD_MS, and sends them
   * as one stream frame: every frame costs an encrypted write of several segments, a window
   * update back and a wake-up on each side, while ggml-rpc peers write a header and its
   * payload with separate calls.
   */
  holdSocketBytes?: () => boolean
  /** how long the socket must be quiet before held-back bytes go anyway, in ms (default HOLD_MS) */
  holdQuietMs?: number
  /** closes both ends when the stream sends nothing for `ms` while `stalled()` says a message is unfinished */
  readTimeout?: { ms: number, stalled: () => boolean, error: () => Error }
}

/** The most bytes held back from the stream: big tensors still stream through in frames of this size. */
export const COALESCE_BYTES = 64 * 1024

/**
 * How long a quiet socket's held-back bytes wait before they are sent anyway: a peer that
 * stops part-way, or goes quiet after one-way commands, delays them this much at most.
 */
export const HOLD_MS = 1

// A message is one buffer, or a list of them (iterable, so no copy is needed to read it).
function chunksOf (data: StreamMessageEvent['data']): Iterable<Uint8Array> {
  return data instanceof Uint8Array ? [data] : data
}

/**
 * Pipes a TCP socket and a tunnel stream into each other until both are closed, with
 * backpressure both ways on every transport: data from the stream is granted back to the
 * remote sender only once the socket took it (a full socket withholds credit until its
 * 'drain' event), and a stream out of credit or send buffer pauses the socket.
 * Resolves with the error that ended the pipe, or undefined after a clean close.
 */
export async function pipeSocketAndStream (socket: Socket, tunnel: CreditStream, options: PipeOptions = {}): Promise<Error | undefined> {
  const { fromStream, fromSocket, holdSocketBytes, holdQuietMs = HOLD_MS, readTimeout } = options
  const { stream } = tunnel
  return await new Promise(resolve => {
    let failure: Error | undefined
    let socketClosed = false
    let streamClosed = false
    let waitingForSocket = false
    let waitingForStream = false
    /** bytes from the stream the socket took but whose credit is not yet given back */
    let unreleased = 0
    let timer: NodeJS.Timeout | undefined
    let held: Uint8Array[] = []
    let heldBytes = 0
    let holdTimer: NodeJS.Timeout | undefined

    const finish = (): void => {
      if (!socketClosed || !streamClosed) return
      clearTimeout(timer)
      clearTimeout(holdTimer)
      resolve(failure)
    }
    const fail = (err: Error): void => {
      failure ??= err
      clearTimeout(timer)
      clearTimeout(holdTimer)
      stream.abort(err)
      socket.destroy()
    }
    // Only a stall of the remote counts: time spent waiting for our own socket does not.
    const armTimer = (): void => {
      clearTimeout(timer)
      if (readTimeout === undefined || waitingForSocket || streamClosed || !readTimeout.stalled()) return
      timer = setTimeout(() => { fail(readTimeout.error()) }, readTimeout.ms)
    }
    const onSocketDrain = (): void => {
      waitingForSocket = false
      release()
      armTimer()
    }
    const release = (): void => {
      try {
        tunnel.release(unreleased)
        unreleased = 0
      } catch (err) {
        fail(err as Error)
      }
    }
    const onStreamDrain = (): void => {
      waitingForStream = false
      socket.resume()
    }

    stream.addEventListener('message', event => {
      if (socket.destroyed) return
      // One write for a header and its payload: rpc-server reads them with separate recv calls
      // and each extra segment costs it a wake-up.
      socket.cork()
      try {
        for (const chunk of chunksOf(event.data)) {
          for (const data of tunnel.push(chunk)) {
            unreleased += data.byteLength
            for (const part of fromStream?.(data) ?? [data]) {
              if (!socket.write(part) && !waitingForSocket) {
                waitingForSocket = true
                socket.once('drain', onSocketDrain)
              }
            }
          }
        }
        // Credit goes back only for data the socket took: a slow reader holds the remote back.
        if (!waitingForSocket) release()
        armTimer()
      } catch (err) {
        fail(err as Error)
      } finally {
        socket.uncork()
      }
    })
    stream.addEventListener('end', () => { socket.end() })
    stream.addEventListener('close', event => {
      streamClosed = true
      clearTimeout(timer)
      if (event.error != null) {
        failure ??= event.error
        socket.destroy()
      } else {
        socket.destroySoon()
      }
      finish()
    })

    const sendHeld = (): void => {
      clearTimeout(holdTimer)
      holdTimer = undefined
      if (heldBytes === 0) return
      const data = held.length === 1 ? held[0] : Buffer.concat(held, heldBytes)
      held = []
      heldBytes = 0
      if (!tunnel.send(data) && !waitingForStream) {
        waitingForStream = true
        socket.pause()
        tunnel.onceWritable(onStreamDrain)
      }
    }
    const sendHeldOrFail = (): void => {
      try {
        sendHeld()
      } catch (err) {
        fail(err as Error)
      }
    }
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const part of fromSocket?.(chunk) ?? [chunk]) {
          held.push(part)
          heldBytes += part.byteLength
        }
        if (heldBytes < COALESCE_BYTES && holdSocketBytes?.() === true) {
          // Measured from the latest bytes: a burst is held together however long it takes to arrive.
          if (holdTimer === undefined) holdTimer = setTimeout(sendHeldOrFail, holdQuietMs)
          else holdTimer.refresh()
          return
        }
        sendHeld()
      } catch (err) {
        fail(err as Error)
      }
    })
    socket.on('error', err => { fail(err) })
    socket.on('close', () => {
      socketClosed = true
      if (stream.status === 'open') {
        // Whatever was held back goes out first: the peer sees what it would have without holding.
        sendHeldOrFail()
        tunnel.closeWhenSent().catch(err => { fail(err as Error) })
      }
      finish()
    })
    armTimer()
  })
}
