import { setTimeout as delay } from 'node:timers/promises'

/** A polled condition did not come true in time. */
export class WaitTimeoutError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'WaitTimeoutError'
  }
}

/**
 * Polls `check` until it returns a value other than undefined; errors it throws count as "not
 * yet". Aborting `signal` ends the wait at once with the signal's reason.
 */
export async function waitFor<T> (what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000, signal?: AbortSignal): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  while (Date.now() < deadline) {
    signal?.throwIfAborted()
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (err) {
      lastError = err
    }
    try {
      await delay(200, undefined, { signal })
    } catch {
      signal?.throwIfAborted()
    }
  }
  throw new WaitTimeoutError(`timed out after ${timeoutMs / 1000} s waiting for ${what}${lastError === undefined ? '' : ` (last error: ${(lastError as Error).message ?? String(lastError)})`}`)
}
