import { readdir, readFile } from 'node:fs/promises'

/** Parent pid of every process, read from /proc (Linux). */
async function parentPids (): Promise<Map<number, number>> {
  const parents = new Map<number, number>()
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => undefined)
    if (stat === undefined) continue
    // The command name in parentheses may contain spaces; the fields after it do not.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    parents.set(Number(entry), Number(fields[1]))
  }
  return parents
}

/** Pids of every process below `pid` (children, grandchildren, ...). */
export async function descendantPids (pid: number): Promise<number[]> {
  const parents = await parentPids()
  const found: number[] = []
  const queue = [pid]
  while (queue.length > 0) {
    const parent = queue.shift()
    for (const [child, ppid] of parents) {
      if (ppid === parent) {
        found.push(child)
        queue.push(child)
      }
    }
  }
  return found
}

/** The pids of `pids` that still exist (zombies included). */
export function runningPids (pids: readonly number[]): number[] {
  return pids.filter(pid => {
    try {
      process.kill(pid, 0)
      return true
    } catch {
      return false
    }
  })
}
