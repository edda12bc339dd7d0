import type { Socket } from 'node:net'
import type { TunnelEnd } from './tunnel-end.js'

/** How a pipe inspects and times the bytes it carries. */
export interface PipeOptions {
  /** checks bytes from the tunnel; returns the parts that may reach the socket, throws to close both ends */
  fromTunnel?: (chunk: Uint8Array) => Uint8Array[]
  /** sees bytes from the socket; returns the parts to send into the tunnel, throws to close both ends */
  fromSocket?: (chunk: Uint8Array) => Uint8Array[]
  /**
   * Asked after `fromSocket`: true while the socket's bytes so far may wait for what follows
   * (a message is incomplete, or only one-way commands are waiting). The pipe then holds
   * them back, up to COALESCE_BYTES or until the socket is quiet for HOLD_MS, and sends them
   * as one piece: on a tunnel stream every frame costs an encrypted write of several segments, a window
   * update back and a wake-up on each side, while ggml-rpc peers write a header and its
   * payload with separate calls.
   */
  holdSocketBytes?: () => boolean
  /** how long the socket must be quiet before held-back bytes go anyway, in ms (default HOLD_MS) */
  holdQuietMs?: number
  /** closes both ends when the tunnel brings nothing for `ms` while `stalled()` says a message is unfinished */
  readTimeout?: { ms: number, stalled: () => boolean, error: () => Error }
}

/** The most bytes held back from the tunnel: big tensors still stream through in frames of this size. */
export const COALESCE_BYTES = 64 * 1024

/**
 * How long a quiet socket's held-back bytes wait before they are sent anyway: a peer that
 * stops part-way, or goes quiet after one-way commands, delays them this much at most.
 */
export const HOLD_MS = 1

/**
 * Pipes a local TCP socket (llama-server's or rpc-server's) and a tunnel end into each other
 * until both are closed, with backpressure both ways on every carrier: data from the tunnel is
 * released to the far end only once the socket took it (a full socket withholds it until its
 * 'drain' event), and a tunnel end that cannot send more pauses the socket.
 * Resolves with the error that ended the pipe, or undefined after a clean close.
 */
export async function pipeSocketAndTunnel (socket: Socket, tunnel: TunnelEnd, options: PipeOptions = {}): Promise<Error | undefined> {
  const { fromTunnel, fromSocket, holdSocketBytes, holdQuietMs = HOLD_MS, readTimeout } = options
  return await new Promise(resolve => {
    let failure: Error | undefined
    let socketClosed = false
    let tunnelClosed = false
    let waitingForSocket = false
    let waitingForTunnel = false
    /** bytes from the tunnel the socket took but not yet released to the far end */
    let unreleased = 0
    let timer: NodeJS.Timeout | undefined
    let held: Uint8Array[] = []
    let heldBytes = 0
    let holdTimer: NodeJS.Timeout | undefined

    const finish = (): void => {
      if (!socketClosed || !tunnelClosed) return
      clearTimeout(timer)
      clearTimeout(holdTimer)
      resolve(failure)
    }
    const fail = (err: Error): void => {
      failure ??= err
      clearTimeout(timer)
      clearTimeout(holdTimer)
      tunnel.abort(err)
      socket.destroy()
    }
    // Only a stall of the remote counts: time spent waiting for our own socket does not.
    const armTimer = (): void => {
      clearTimeout(timer)
      if (readTimeout === undefined || waitingForSocket || tunnelClosed || !readTimeout.stalled()) return
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
    const onTunnelDrain = (): void => {
      waitingForTunnel = false
      socket.resume()
    }

    tunnel.onData(arrived => {
      if (socket.destroyed) return
      // One write for a header and its payload: rpc-server reads them with separate recv calls
      // and each extra segment costs it a wake-up.
      socket.cork()
      try {
        for (const data of arrived) {
          unreleased += data.byteLength
          for (const part of fromTunnel?.(data) ?? [data]) {
            if (!socket.write(part) && !waitingForSocket) {
              waitingForSocket = true
              socket.once('drain', onSocketDrain)
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
    tunnel.onEnd(() => { socket.end() })
    tunnel.onClose(err => {
      tunnelClosed = true
      clearTimeout(timer)
      if (err !== undefined) {
        failure ??= err
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
      if (!tunnel.send(data) && !waitingForTunnel) {
        waitingForTunnel = true
        socket.pause()
        tunnel.onceWritable(onTunnelDrain)
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
      if (tunnel.writable) {
        // Whatever was held back goes out first: the peer sees what it would have without holding.
        sendHeldOrFail()
        tunnel.closeWhenSent().catch(err => { fail(err as Error) })
      }
      finish()
    })
    armTimer()
  })
}
