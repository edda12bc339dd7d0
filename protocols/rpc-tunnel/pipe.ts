import { LocalConnectionResetError } from './errors.js'
import { TunnelResetError, type LocalEnd, type TunnelEnd } from './tunnel-end.js'

/** How a pipe inspects and times the bytes it carries. */
export interface PipeOptions {
  /** checks bytes from the tunnel; returns the parts that may reach the local connection, throws to close both ends */
  fromTunnel?: (chunk: Uint8Array) => Uint8Array[]
  /** sees bytes from the local connection (its socket); returns the parts to send into the tunnel, throws to close both ends */
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
  /**
   * Asked after each arrival once the pipe holds nothing back, owes no release and waits for
   * neither end: may hand both ends to a relay that carries their bytes from then on (the
   * native relay, past a session's weights), and returns true when it did. The pipe then only follows the ends
   * as they end and close; `fail` closes both with an error, as a throwing hook does.
   */
  handOver?: (fail: (err: Error) => void) => boolean
}

/** The most bytes held back from the tunnel: big tensors still stream through in frames of this size. */
export const COALESCE_BYTES = 64 * 1024

/**
 * How long a quiet socket's held-back bytes wait before they are sent anyway: a peer that
 * stops part-way, or goes quiet after one-way commands, delays them this much at most.
 */
export const HOLD_MS = 1

/**
 * Pipes the local connection (llama-server's or rpc-server's, see LocalEnd) and a tunnel end
 * into each other until both are closed, with backpressure both ways on every carrier: data
 * from either side is released to its sender only once the other side took it (one whose
 * buffer is full withholds it until it drains), so a slow reader holds its sender back.
 * Resolves with the error that ended the pipe, or undefined after a clean close.
 */
export async function pipeLocalAndTunnel (local: LocalEnd, tunnel: TunnelEnd, options: PipeOptions = {}): Promise<Error | undefined> {
  const { fromTunnel, fromSocket, holdSocketBytes, holdQuietMs = HOLD_MS, readTimeout, handOver } = options
  return await new Promise(resolve => {
    let failure: Error | undefined
    let localClosed = false
    let tunnelClosed = false
    let waitingForLocal = false
    let waitingForTunnel = false
    /** bytes from the tunnel the local connection took but not yet released to the far end */
    let unreleased = 0
    /** bytes from the local connection not yet sent into the tunnel, or sent while it waits */
    let localUnreleased = 0
    let timer: NodeJS.Timeout | undefined
    let held: Uint8Array[] = []
    let heldBytes = 0
    let holdTimer: NodeJS.Timeout | undefined
    let handedOver = false

    const finish = (): void => {
      if (!localClosed || !tunnelClosed) return
      clearTimeout(timer)
      clearTimeout(holdTimer)
      resolve(failure)
    }
    const fail = (err: Error): void => {
      failure ??= err
      clearTimeout(timer)
      clearTimeout(holdTimer)
      tunnel.abort(err)
      local.abort(err)
    }
    // Only a stall of the remote counts: time spent waiting for our own local connection does not.
    const armTimer = (): void => {
      clearTimeout(timer)
      if (readTimeout === undefined || handedOver || waitingForLocal || tunnelClosed || !readTimeout.stalled()) return
      timer = setTimeout(() => { fail(readTimeout.error()) }, readTimeout.ms)
    }
    const release = (): void => {
      try {
        tunnel.release(unreleased)
        unreleased = 0
      } catch (err) {
        fail(err as Error)
      }
    }
    const onLocalDrain = (): void => {
      waitingForLocal = false
      release()
      armTimer()
    }
    const releaseLocal = (): void => {
      local.release(localUnreleased)
      localUnreleased = 0
    }
    const onTunnelDrain = (): void => {
      waitingForTunnel = false
      if (heldBytes === 0) releaseLocal()
    }
    const tryHandOver = (): void => {
      if (handOver === undefined || handedOver || failure !== undefined || localClosed || tunnelClosed || !local.writable || !tunnel.writable) return
      if (waitingForLocal || waitingForTunnel || heldBytes > 0 || holdTimer !== undefined || unreleased > 0 || localUnreleased > 0) return
      handedOver = handOver(fail)
      if (handedOver) clearTimeout(timer)
    }

    tunnel.onData(arrived => {
      if (!local.writable) return
      try {
        const parts: Uint8Array[] = []
        for (const data of arrived) {
          unreleased += data.byteLength
          for (const part of fromTunnel?.(data) ?? [data]) parts.push(part)
        }
        // One write for a header and its payload: rpc-server reads them with separate recv calls
        // and each extra segment costs it a wake-up.
        if (parts.length > 0 && !local.send(...parts) && !waitingForLocal) {
          waitingForLocal = true
          local.onceWritable(onLocalDrain)
        }
        // Credit goes back only for data the local connection took: a slow reader holds the remote back.
        if (!waitingForLocal) release()
        armTimer()
        tryHandOver()
      } catch (err) {
        fail(err as Error)
      }
    })
    tunnel.onEnd(() => { void local.closeWhenSent() })
    tunnel.onClose(err => {
      tunnelClosed = true
      clearTimeout(timer)
      if (err !== undefined) {
        failure ??= err
        local.abort(err)
      } else {
        // Nothing more can come for it: the local connection closes once it sent what it has.
        void local.closeWhenSent().then(() => { local.destroy() })
      }
      finish()
    })

    const sendHeld = (): void => {
      clearTimeout(holdTimer)
      holdTimer = undefined
      if (heldBytes > 0) {
        const sent = held
        held = []
        heldBytes = 0
        if (!tunnel.send(...sent) && !waitingForTunnel) {
          waitingForTunnel = true
          tunnel.onceWritable(onTunnelDrain)
        }
      }
      // Also for bytes that fromSocket kept back for good (tensor data the worker holds already).
      if (!waitingForTunnel) releaseLocal()
    }
    const sendHeldOrFail = (): void => {
      try {
        sendHeld()
      } catch (err) {
        fail(err as Error)
      }
    }
    local.onData(arrived => {
      try {
        for (const chunk of arrived) {
          localUnreleased += chunk.byteLength
          for (const part of fromSocket?.(chunk) ?? [chunk]) {
            held.push(part)
            heldBytes += part.byteLength
          }
        }
        if (heldBytes < COALESCE_BYTES && holdSocketBytes?.() === true) {
          // Measured from the latest bytes: a burst is held together however long it takes to arrive.
          if (holdTimer === undefined) holdTimer = setTimeout(sendHeldOrFail, holdQuietMs)
          else holdTimer.refresh()
          return
        }
        sendHeld()
        tryHandOver()
      } catch (err) {
        fail(err as Error)
      }
    })
    local.onClose(err => {
      localClosed = true
      if (err !== undefined) {
        // Unless this pipe closed it, having closed the tunnel already.
        if (failure === undefined) fail(err instanceof TunnelResetError ? new LocalConnectionResetError(err.message) : err)
      } else if (tunnel.writable) {
        // Whatever was held back goes out first: the peer sees what it would have without holding.
        sendHeldOrFail()
        tunnel.closeWhenSent().catch(err => { fail(err as Error) })
      }
      finish()
    })
    armTimer()
  })
}
