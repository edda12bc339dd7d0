import assert from 'node:assert/strict'
import { availableParallelism } from 'node:os'
import { describe, it } from 'node:test'
import {
  compileJobsForBudget, parseCgroupMounts, parseCgroupV1CpuQuota, parseCgroupV2CpuMax, parseProcCgroup, readCpuBudget, threadsForBudget
} from './cpu-budget.js'

// Real file contents, copied from a Docker container (cgroup v2), a Kubernetes pod on a cgroup v1
// node, and this machine (v1 controllers next to an empty v2 hierarchy).
const V2_MOUNTINFO = [
  '1003 985 0:268 / / rw,relatime master:421 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B',
  '1010 1003 0:275 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro',
  '1011 1010 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate,memory_recursiveprot'
].join('\n')

const V1_MOUNTINFO = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '32 31 0:29 /kubepods/burstable/pod7c3e /sys/fs/cgroup/cpu,cpuacct ro,nosuid,nodev,noexec,relatime master:12 - cgroup cgroup rw,cpu,cpuacct',
  '34 31 0:31 /kubepods/burstable/pod7c3e /sys/fs/cgroup/cpuset ro,nosuid,nodev,noexec,relatime master:13 - cgroup cgroup rw,cpuset',
  '35 31 0:32 /kubepods/burstable/pod7c3e /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:14 - cgroup cgroup rw,memory'
].join('\n')

const HYBRID_MOUNTINFO = [
  '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
  '33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw'
].join('\n')

describe('CPU budget', () => {
  it('reads cgroup v2 cpu.max', () => {
    assert.equal(parseCgroupV2CpuMax('max 100000\n'), undefined)
    assert.equal(parseCgroupV2CpuMax('150000 100000\n'), 1.5)
    assert.equal(parseCgroupV2CpuMax('200000 100000\n'), 2)
    assert.equal(parseCgroupV2CpuMax('50000 100000'), 0.5)
  })

  it('reads cgroup v1 cfs quota and period', () => {
    assert.equal(parseCgroupV1CpuQuota('-1\n', '100000\n'), undefined)
    assert.equal(parseCgroupV1CpuQuota('250000\n', '100000\n'), 2.5)
    assert.equal(parseCgroupV1CpuQuota('10000\n', '20000\n'), 0.5)
  })

  it('ignores malformed quota files rather than shrinking the budget', () => {
    assert.equal(parseCgroupV2CpuMax(''), undefined)
    assert.equal(parseCgroupV2CpuMax('garbage 100000'), undefined)
    assert.equal(parseCgroupV1CpuQuota('100000', '0'), undefined)
  })

  it('finds the process cgroup in v2, v1 and hybrid /proc/self/cgroup files', () => {
    assert.deepEqual(parseProcCgroup('0::/\n'), { v2: '/' })
    assert.deepEqual(parseProcCgroup([
      '12:pids:/kubepods/burstable/pod7c3e/4f1a',
      '4:cpu,cpuacct:/kubepods/burstable/pod7c3e/4f1a',
      '3:cpuset:/kubepods/burstable/pod7c3e/4f1a',
      '1:name=systemd:/kubepods/burstable/pod7c3e/4f1a',
      ''
    ].join('\n')), { v1Cpu: '/kubepods/burstable/pod7c3e/4f1a' })
    assert.deepEqual(parseProcCgroup('2:cpuacct:/\n1:cpu:/\n0::/\n'), { v1Cpu: '/', v2: '/' })
  })

  it('finds the cgroup mounts in /proc/self/mountinfo', () => {
    assert.deepEqual(parseCgroupMounts(V2_MOUNTINFO), { v2: { root: '/', mountPoint: '/sys/fs/cgroup' } })
    assert.deepEqual(parseCgroupMounts(V1_MOUNTINFO), {
      v1Cpu: { root: '/kubepods/burstable/pod7c3e', mountPoint: '/sys/fs/cgroup/cpu,cpuacct' }
    })
    assert.deepEqual(parseCgroupMounts(HYBRID_MOUNTINFO), {
      v1Cpu: { root: '/', mountPoint: '/sys/fs/cgroup/cpu' },
      v2: { root: '/', mountPoint: '/sys/fs/cgroup/unified' }
    })
    assert.deepEqual(parseCgroupMounts('50 31 0:40 / /mnt/my\\040cgroup rw - cgroup2 cgroup2 rw'), {
      v2: { root: '/', mountPoint: '/mnt/my cgroup' }
    })
  })

  it('never picks more threads than cores, nor fewer than one', () => {
    assert.equal(threadsForBudget(2, undefined), 2)
    assert.equal(threadsForBudget(2, 8), 2)
    assert.equal(threadsForBudget(16, 2.5), 2)
    assert.equal(threadsForBudget(16, 0.5), 1)
    assert.equal(threadsForBudget(1, undefined), 1)
  })

  it('compiles on every core the budget allows, counting part of a CPU of quota as a job', () => {
    assert.equal(compileJobsForBudget(2, undefined), 2)
    assert.equal(compileJobsForBudget(2, 8), 2)
    assert.equal(compileJobsForBudget(16, 2.5), 3)
    assert.equal(compileJobsForBudget(16, 0.5), 1)
  })

  it('measures this process: threads within the affinity mask', async () => {
    const budget = await readCpuBudget()
    assert.equal(budget.cores, availableParallelism())
    assert.equal(budget.threads, threadsForBudget(budget.cores, budget.quota))
    assert.ok(budget.threads >= 1 && budget.threads <= budget.cores)
  })
})
