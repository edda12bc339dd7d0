import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startRpcServer, type RpcServer } from './rpc-server.js'

/** Local addresses ("hex-ip:hex-port") of the TCP sockets that process `pid` listens on, from /proc. */
async function listeningAddresses (pid: number): Promise<string[]> {
  const inodes = new Set<string>()
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')
    const match = /^socket:\[(\d+)\]$/.exec(target)
    if (match != null) inodes.add(match[1])
  }
  const addresses: string[] = []
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const lines = (await readFile(table, 'utf8').catch(() => '')).split('\n').slice(1)
    for (const line of lines) {
      const fields = line.trim().split(/\s+/)
      // fields: sl local_address rem_address st ... inode (10th)
      if (fields.length > 9 && fields[3] === '0A' && inodes.has(fields[9])) addresses.push(fields[1])
    }
  }
  return addresses
}

async function accepts (port: number): Promise<boolean> {
  const socket = connect({ host: '127.0.0.1', port })
  try {
    await once(socket, 'connect')
    return true
  } catch {
    return false
  } finally {
    socket.destroy()
  }
}

// Needs the tools `mesh setup` builds; findLlamaCppTools() says so when they are missing.
describe('supervised rpc-server', () => {
  let dataDir: string
  let server: RpcServer

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'llmesh-rpc-server-test-'))
    // What rpc-server's own cache left in a data dir before llmesh turned it off: activations, maybe.
    await mkdir(join(dataDir, 'rpc-cache', 'rpc'), { recursive: true })
    await writeFile(join(dataDir, 'rpc-cache', 'rpc', '0123456789abcdef'), 'hidden states')
    server = await startRpcServer({ dataDir, threads: 1, restartPolicy: { firstDelayMs: 100 } })
  })

  after(async () => {
    await server?.dispose()
    await rm(dataDir, { recursive: true, force: true })
  })

  it('listens on 127.0.0.1 only, on the port it reports', async () => {
    assert.ok(server.pid !== undefined && server.port !== undefined)
    const addresses = await listeningAddresses(server.pid)
    const port = server.port.toString(16).toUpperCase().padStart(4, '0')
    // 0100007F is 127.0.0.1 in /proc/net/tcp's byte order; no IPv6 or wildcard socket may exist.
    assert.deepEqual(addresses, [`0100007F:${port}`])
  })

  it('runs without a cache of its own, and removes the one older versions kept', async () => {
    // rpc-server's --cache would save every SET_TENSOR over 10 MiB, a prompt's hidden states included.
    assert.ok(server.recentOutput.some(line => /local cache\s*: n\/a/.test(line)), `rpc-server output: ${server.recentOutput.join(' | ')}`)
    await assert.rejects(stat(join(dataDir, 'rpc-cache')), { code: 'ENOENT' })
  })

  it('is restarted when it dies, and accepts connections again', async () => {
    const oldPid = server.pid as number
    const restarted = once(server, 'restart')
    process.kill(oldPid, 'SIGKILL')
    const [{ port, pid }] = await restarted as [{ port: number, pid: number }]
    assert.notEqual(pid, oldPid)
    assert.equal(server.port, port)
    assert.ok(await accepts(port))
    assert.equal(server.state, 'running')
    assert.equal(server.restarts, 1)
  })

  it('ends failed, reporting why, when it keeps crashing', async () => {
    const crashing = await startRpcServer({ dataDir, threads: 1, restartPolicy: { firstDelayMs: 50, maxCrashes: 3 } })
    try {
      const failed = once(crashing, 'failed')
      for (let crash = 1; crash <= 3; crash++) {
        process.kill(crashing.pid as number, 'SIGKILL')
        if (crash < 3) await once(crashing, 'restart')
      }
      const [reason] = await failed as [string]
      assert.equal(crashing.state, 'failed')
      assert.equal(crashing.failure, reason)
      assert.match(reason, /^rpc-server crashed 3 times within 60 s \(last: it was killed by SIGKILL\)/)
      assert.equal(crashing.port, undefined)
      assert.equal(crashing.restarts, 2)
    } finally {
      await crashing.dispose()
    }
  })

  it('stays stopped after dispose', async () => {
    const pid = server.pid as number
    await server.dispose()
    assert.equal(server.port, undefined)
    assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' })
  })
})
