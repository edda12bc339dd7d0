// Core dumps off and memory locking, checked through the kernel's own view of real processes:
// /proc/PID/limits, /proc/PID/status and the owner of the files in /proc/PID (root for a process
// that is not dumpable, whatever user it runs as).
import assert from 'node:assert/strict'
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { once } from 'node:events'
import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { spawnTiedToParent } from './child-process.js'
import { hardenThisProcess, MLOCK_LINE } from './process-hardening.js'

const NOBODY = 65534
const isRoot = process.getuid?.() === 0
/** Children run as nobody where this test may choose (as root: root's own /proc files are root's anyway). */
const asUser: SpawnOptions = isRoot ? { uid: NOBODY, gid: NOBODY } : {}
const childUid = isRoot ? NOBODY : process.getuid?.()

/** The soft and hard value of one line of /proc/PID/limits, e.g. "Max core file size". */
async function limit (pid: number | 'self', name: string): Promise<[string, string]> {
  const text = await readFile(`/proc/${pid}/limits`, 'utf8')
  const line = text.split('\n').find(entry => entry.startsWith(name))
  assert.ok(line !== undefined, `no "${name}" in /proc/${pid}/limits`)
  const [soft, hard] = line.slice(name.length).trim().split(/\s+/)
  return [soft, hard]
}

/** A field of /proc/PID/status, e.g. "VmLck" or "Uid". */
async function status (pid: number, field: string): Promise<string> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8')
  const line = text.split('\n').find(entry => entry.startsWith(`${field}:`))
  assert.ok(line !== undefined, `no ${field} in /proc/${pid}/status`)
  return line.slice(field.length + 1).trim()
}

describe('process hardening', { skip: process.platform !== 'linux' && 'the library uses Linux\'s prctl' }, () => {
  let cacheDir: string
  const children: ChildProcess[] = []

  before(async () => {
    // A cache of its own that another user may read: the library is preloaded into children run as
    // nobody. In /tmp, which every user may cross, rather than $TMPDIR, which may be its owner's alone.
    cacheDir = await mkdtemp(join(isRoot ? '/tmp' : tmpdir(), 'llmesh-hardening-test-'))
    await chmod(cacheDir, 0o755)
    process.env.LLMESH_CACHE = cacheDir
  })

  after(async () => {
    for (const child of children) child.kill('SIGKILL')
    await rm(cacheDir, { recursive: true, force: true })
  })

  /** Starts `sleep` as llmesh starts its children (or plainly), and waits until it runs. */
  async function sleeper (options: SpawnOptions, hardened = true): Promise<{ child: ChildProcess, stderr: string[] }> {
    const child = hardened ? spawnTiedToParent('/bin/sleep', ['60'], { ...options, stdio: ['ignore', 'ignore', 'pipe'] }) : spawn('/bin/sleep', ['60'], { ...options, stdio: ['ignore', 'ignore', 'pipe'] })
    children.push(child)
    const stderr: string[] = []
    if (child.stderr != null) createInterface({ input: child.stderr }).on('line', line => stderr.push(line))
    await once(child, 'spawn')
    const pid = child.pid as number
    // setpriv and env exec into sleep, keeping the pid: wait for the last image.
    for (let waited = 0; (await readFile(`/proc/${pid}/comm`, 'utf8')).trim() !== 'sleep'; waited += 20) {
      assert.ok(waited < 10_000, 'the child never became sleep')
      await sleep(20)
    }
    return { child, stderr }
  }

  it('runs children with RLIMIT_CORE 0 and not dumpable', async () => {
    const { child } = await sleeper(asUser)
    const pid = child.pid as number
    assert.deepEqual(await limit(pid, 'Max core file size'), ['0', '0'])
    assert.match(await status(pid, 'Uid'), new RegExp(`^${String(childUid)}\\s`))
    assert.equal((await stat(`/proc/${pid}/status`)).uid, 0, 'the kernel gives root the /proc/PID files of a process that is not dumpable')

    // The control: the same process without llmesh's spawn is dumpable, so its /proc files are its user's.
    const plain = await sleeper(asUser, false)
    assert.equal((await stat(`/proc/${plain.child.pid as number}/status`)).uid, childUid)
  })

  it('locks a child\'s memory with LLMESH_MLOCK=1 where the machine allows it, and says when it does not', async () => {
    const env = { ...process.env, LLMESH_MLOCK: '1' }
    const allowed = await sleeper({ env })
    const pid = allowed.child.pid as number
    for (let waited = 0; allowed.stderr.length === 0; waited += 20) {
      assert.ok(waited < 10_000, 'the child said nothing about --mlock')
      await sleep(20)
    }
    const [, outcome] = MLOCK_LINE.exec(allowed.stderr[0]) ?? []
    if (outcome === 'locked') {
      assert.ok(parseInt(await status(pid, 'VmLck')) > 0, 'locked memory shows in VmLck')
    } else {
      // Root here may have neither CAP_IPC_LOCK nor a way to raise RLIMIT_MEMLOCK: then it must say so.
      assert.match(outcome ?? '', /^not allowed: /)
    }

    // nobody can neither raise a finite hard limit nor lock beyond it.
    const [, hard] = await limit('self', 'Max locked memory')
    if (isRoot && hard !== 'unlimited') {
      const refused = await sleeper({ env, uid: NOBODY, gid: NOBODY })
      for (let waited = 0; refused.stderr.length === 0; waited += 20) {
        assert.ok(waited < 10_000, 'the child said nothing about --mlock')
        await sleep(20)
      }
      assert.match(refused.stderr[0], /^llmesh-mlock: not allowed: RLIMIT_MEMLOCK is \d+ bytes/)
      assert.equal(await status(refused.child.pid as number, 'VmLck'), '0 kB')
    }
  })

  it('turns core dumps off for the mesh process itself', async () => {
    assert.deepEqual(hardenThisProcess(), { dumpable: 0 })
    assert.deepEqual(await limit('self', 'Max core file size'), ['0', '0'])
  })
})
