import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { SupervisedProcess } from './child-process.js'
import { ChildProcessStartError } from './errors.js'

/** A supervised `node -e SCRIPT` child. */
function node (script: string): SupervisedProcess {
  return SupervisedProcess.spawn({ name: 'test-child', command: process.execPath, args: ['-e', script] })
}

function isRunning (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('supervised child process', () => {
  it('does not outlive a parent killed with SIGKILL', { skip: process.platform !== 'linux' && 'the parent-death signal is Linux-only' }, async () => {
    // A parent that supervises a long-running child and prints the child's pid once the child
    // runs: before that, setpriv may not have set the parent-death signal yet.
    const script = `import('${new URL('./child-process.js', import.meta.url).href}').then(async ({ SupervisedProcess }) => {
      const child = SupervisedProcess.spawn({ name: 'grandchild', command: process.execPath, args: ['-e', 'console.log("running"); setInterval(() => {}, 1000)'] })
      await child.waitForLine(/running/, { timeoutMs: 10000 })
      console.log(child.pid)
      setInterval(() => {}, 1000)
    })`
    const parent = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    const [line] = await once(createInterface({ input: parent.stdout }), 'line') as [string]
    const childPid = Number(line)
    assert.ok(isRunning(childPid))
    parent.kill('SIGKILL')
    await once(parent, 'exit')
    for (let waited = 0; waited < 5000 && isRunning(childPid); waited += 100) await sleep(100)
    assert.equal(isRunning(childPid), false, 'the supervised child outlived its parent')
  })

  it('waits for a readiness line and stops the child with SIGTERM', async () => {
    const child = node("console.error('loading'); setTimeout(() => console.log('listening on 127.0.0.1:4242'), 100); setInterval(() => {}, 1000)")
    const match = await child.waitForLine(/listening on (\S+)/, { timeoutMs: 10_000 })
    assert.equal(match[1], '127.0.0.1:4242')
    assert.deepEqual(child.recentOutput, ['loading', 'listening on 127.0.0.1:4242'])
    assert.deepEqual(await child.stop(), { code: null, signal: 'SIGTERM' })
  })

  it('kills a child that ignores SIGTERM once the grace time is over', async () => {
    const child = node("process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000)")
    await child.waitForLine(/ready/, { timeoutMs: 10_000 })
    assert.deepEqual(await child.stop(200), { code: null, signal: 'SIGKILL' })
  })

  it('reports a child that exits before it is ready, with its last output', async () => {
    const child = node("console.error('error: cannot open model'); process.exit(3)")
    await assert.rejects(child.waitForLine(/listening/, { timeoutMs: 10_000 }), (err: Error) => {
      assert.ok(err instanceof ChildProcessStartError)
      assert.match(err.message, /^test-child exited with code 3 before it was ready; its last output: error: cannot open model$/)
      return true
    })
  })

  it('gives up waiting after the timeout', async () => {
    const child = node('setInterval(() => {}, 1000)')
    try {
      await assert.rejects(child.waitUntil(async () => false, { timeoutMs: 300, intervalMs: 50 }), /test-child was not ready after 0\.3 s/)
    } finally {
      await child.stop()
    }
  })

  it('reports a binary that cannot be started', async () => {
    const child = SupervisedProcess.spawn({ name: 'missing-tool', command: '/nonexistent/llama-server', args: [] })
    await assert.rejects(child.waitForLine(/ready/, { timeoutMs: 10_000 }), (err: Error) => err instanceof ChildProcessStartError && err.message.includes('ENOENT'))
  })
})
