import { readFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { dirname, join, relative, sep } from 'node:path'

/** How much CPU this process may use, and the compute thread count that follows from it. */
export interface CpuBudget {
  /** CPUs the process may run on: its affinity mask, as `os.availableParallelism()` reports it */
  cores: number
  /** CPU time the cgroup quota allows, in CPUs (1.5 = 150 ms per 100 ms), or undefined when unlimited */
  quota: number | undefined
  /** threads to compute with: the whole CPUs of the quota, never more than `cores`, at least 1 */
  threads: number
}

/** Where a cgroup hierarchy is mounted, from one line of /proc/self/mountinfo. */
export interface CgroupMount {
  /** the path inside the hierarchy that is mounted (not "/" inside some containers) */
  root: string
  /** where that path appears in this process's file system */
  mountPoint: string
}

/** The mounts that can hold a CPU quota: the cgroup v2 hierarchy and the v1 `cpu` controller. */
export interface CgroupMounts {
  v2?: CgroupMount
  v1Cpu?: CgroupMount
}

/** This process's cgroup paths, from /proc/self/cgroup. */
export interface ProcessCgroups {
  /** path in the v2 (unified) hierarchy, from the `0::PATH` line */
  v2?: string
  /** path in the v1 hierarchy that has the `cpu` controller */
  v1Cpu?: string
}

/**
 * Threads to run ggml with for a CPU budget. The quota is rounded down: ggml's threads meet at a
 * barrier after every operation, so one thread throttled by the quota stalls all the others.
 */
export function threadsForBudget (cores: number, quota: number | undefined): number {
  const limit = quota === undefined ? cores : Math.min(cores, Math.floor(quota))
  return Math.max(1, limit)
}

/**
 * Parallel compile jobs for a CPU budget: every core of the affinity mask, fewer only where the
 * quota allows less. Unlike ggml's threads, compilers wait for nobody, so part of a CPU of quota
 * still counts as a job (rounded up).
 */
export function compileJobsForBudget (cores: number, quota: number | undefined): number {
  const limit = quota === undefined ? cores : Math.min(cores, Math.ceil(quota))
  return Math.max(1, limit)
}

/** Parses a cgroup v2 `cpu.max` file ("max 100000" or "150000 100000") into CPUs, undefined when unlimited. */
export function parseCgroupV2CpuMax (text: string): number | undefined {
  const [quota, period] = text.trim().split(/\s+/)
  if (quota === undefined || quota === 'max') return undefined
  return cpusFromQuota(Number(quota), period === undefined ? 100_000 : Number(period))
}

/** Parses cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` into CPUs, undefined when unlimited (-1). */
export function parseCgroupV1CpuQuota (quotaText: string, periodText: string): number | undefined {
  return cpusFromQuota(Number(quotaText.trim()), Number(periodText.trim()))
}

function cpusFromQuota (quotaUs: number, periodUs: number): number | undefined {
  // A malformed file must not shrink the budget: treat it like "no quota".
  if (!Number.isFinite(quotaUs) || quotaUs <= 0 || !Number.isFinite(periodUs) || periodUs <= 0) return undefined
  return quotaUs / periodUs
}

/** Parses /proc/self/cgroup: the v2 path (`0::/path`) and the path of the v1 hierarchy holding `cpu`. */
export function parseProcCgroup (text: string): ProcessCgroups {
  const result: ProcessCgroups = {}
  for (const line of text.split('\n')) {
    const match = /^(\d+):([^:]*):(.*)$/.exec(line.trim())
    if (match == null) continue
    const [, id, controllers, path] = match
    if (id === '0' && controllers === '') result.v2 = path
    else if (controllers.split(',').includes('cpu')) result.v1Cpu = path
  }
  return result
}

/** Parses /proc/self/mountinfo for the cgroup v2 mount and the cgroup v1 mount of the `cpu` controller. */
export function parseCgroupMounts (mountinfo: string): CgroupMounts {
  const result: CgroupMounts = {}
  for (const line of mountinfo.split('\n')) {
    // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS"
    const [before, after] = line.split(' - ')
    if (after === undefined) continue
    const fields = before.split(' ')
    const [fsType, , superOptions = ''] = after.split(' ')
    const mount = { root: unescapeMountPath(fields[3]), mountPoint: unescapeMountPath(fields[4]) }
    if (fsType === 'cgroup2') result.v2 ??= mount
    else if (fsType === 'cgroup' && superOptions.split(',').includes('cpu')) result.v1Cpu ??= mount
  }
  return result
}

// mountinfo writes space, tab, newline and backslash in paths as octal escapes (\040).
function unescapeMountPath (path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))
}

/** Directories from the process's cgroup up to the mount point: a quota on any of them applies. */
function cgroupDirs (mount: CgroupMount, cgroupPath: string): string[] {
  const inside = relative(mount.root, cgroupPath)
  // A cgroup outside the mounted subtree cannot be read from here; only the mount's own limit can.
  const dir = inside.startsWith('..') ? mount.mountPoint : join(mount.mountPoint, inside)
  const dirs = [dir]
  for (let d = dir; d !== mount.mountPoint && d.startsWith(mount.mountPoint + sep);) {
    d = dirname(d)
    dirs.push(d)
  }
  return dirs
}

async function readOptional (path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8')
  } catch {
    return undefined
  }
}

async function quotaFromDirs (dirs: string[], readQuota: (dir: string) => Promise<number | undefined>): Promise<number | undefined> {
  const quotas = (await Promise.all(dirs.map(readQuota))).filter((q): q is number => q !== undefined)
  return quotas.length === 0 ? undefined : Math.min(...quotas)
}

/** Reads the CPU quota (in CPUs) that cgroups v2 and v1 impose on this process, undefined when none. */
export async function readCgroupCpuQuota (): Promise<number | undefined> {
  const [procCgroup, mountinfo] = await Promise.all([readOptional('/proc/self/cgroup'), readOptional('/proc/self/mountinfo')])
  if (procCgroup === undefined || mountinfo === undefined) return undefined
  const paths = parseProcCgroup(procCgroup)
  const mounts = parseCgroupMounts(mountinfo)
  const quotas: number[] = []
  if (paths.v2 !== undefined && mounts.v2 !== undefined) {
    const q = await quotaFromDirs(cgroupDirs(mounts.v2, paths.v2), async dir => {
      const text = await readOptional(join(dir, 'cpu.max'))
      return text === undefined ? undefined : parseCgroupV2CpuMax(text)
    })
    if (q !== undefined) quotas.push(q)
  }
  if (paths.v1Cpu !== undefined && mounts.v1Cpu !== undefined) {
    const q = await quotaFromDirs(cgroupDirs(mounts.v1Cpu, paths.v1Cpu), async dir => {
      const [quota, period] = await Promise.all([readOptional(join(dir, 'cpu.cfs_quota_us')), readOptional(join(dir, 'cpu.cfs_period_us'))])
      return quota === undefined || period === undefined ? undefined : parseCgroupV1CpuQuota(quota, period)
    })
    if (q !== undefined) quotas.push(q)
  }
  return quotas.length === 0 ? undefined : Math.min(...quotas)
}

/** Measures this process's CPU budget: affinity mask and cgroup quota, and the thread count they allow. */
export async function readCpuBudget (): Promise<CpuBudget> {
  const cores = availableParallelism()
  const quota = await readCgroupCpuQuota()
  return { cores, quota, threads: threadsForBudget(cores, quota) }
}
