import type { Socket } from 'node:net'
import type { Stream, StreamMessageEvent } from '@libp2p/interface'

/** How a pipe inspects and times the bytes it carries. */
export interface PipeOptions {
  /** checks bytes from the stream; returns the parts that may reach the socket, throws to close both ends */
  fromStream?: (chunk: Uint8Array) => Uint8Array[]
  /** sees bytes from the socket before they enter the stream; throws to close both ends */
  fromSocket?: (chunk: Uint8Array) => void
  /** closes both ends when the stream sends nothing for `ms` while `stalled()` says a message is unfinished */
  readTimeout?: { ms: number, stalled: () => boolean, error: () => Error }
}

// A message is one buffer, or a list of them (iterable, so no copy is needed to read it).
function chunksOf (data: StreamMessageEvent['data']): Iterable<Uint8Array> {
  return data instanceof Uint8Array ? [data] : data
}

/**
 * Pipes a TCP socket and a libp2p stream into each other until both are closed, with
 * backpressure both ways: a full socket pauses the stream (which throttles the remote
 * sender on yamux) and a full stream pauses the socket, each until its 'drain' event.
 * Resolves with the error that ended the pipe, or undefined after a clean close.
 */
export async function pipeSocketAndStream (socket: Socket, stream: Stream, options: PipeOptions = {}): Promise<Error | undefined> {
  const { fromStream, fromSocket, readTimeout } = options
  return await new Promise(resolve => {
    let failure: Error | undefined
    let socketClosed = false
    let streamClosed = false
    let waitingForSocket = false
    let waitingForStream = false
    let timer: NodeJS.Timeout | undefined

    const finish = (): void => {
      if (!socketClosed || !streamClosed) return
      clearTimeout(timer)
      resolve(failure)
    }
    const fail = (err: Error): void => {
      failure ??= err
      clearTimeout(timer)
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
      stream.resume()
      armTimer()
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
          for (const part of fromStream?.(chunk) ?? [chunk]) {
            if (!socket.write(part) && !waitingForSocket) {
              waitingForSocket = true
              stream.pause()
              socket.once('drain', onSocketDrain)
            }
          }
        }
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

    socket.on('data', (chunk: Buffer) => {
      try {
        fromSocket?.(chunk)
        if (!stream.send(chunk) && !waitingForStream) {
          waitingForStream = true
          socket.pause()
          stream.addEventListener('drain', onStreamDrain, { once: true })
        }
      } catch (err) {
        fail(err as Error)
      }
    })
    socket.on('error', err => { fail(err) })
    socket.on('close', () => {
      socketClosed = true
      if (stream.status === 'open') stream.close().catch(err => { fail(err as Error) })
      finish()
    })
    armTimer()
  })
}
