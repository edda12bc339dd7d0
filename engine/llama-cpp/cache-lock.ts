import lockfile from 'proper-lockfile'

/**
 * Takes the lock of a cache entry (`<path>.lock`), calling `onWaiting` first when another
 * process holds it. A lock held by a live process is waited for; one left by a killed process
 * goes stale after a minute (proper-lockfile refreshes it while held).
 */
export async function lockCacheEntry (path: string, onWaiting?: () => void): Promise<() => Promise<void>> {
  const lockOptions = { realpath: false, stale: 60_000, lockfilePath: `${path}.lock` }
  try {
    return await lockfile.lock(path, lockOptions)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err
  }
  onWaiting?.()
  return await lockfile.lock(path, { ...lockOptions, retries: { forever: true, minTimeout: 500, maxTimeout: 2_000 } })
}
