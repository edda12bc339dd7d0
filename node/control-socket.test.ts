import assert from 'node:assert/strict'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { controlRequest, listenControlSocket } from './control-socket.js'
import { ControlRequestError, DataDirError, NodeNotRunningError } from './errors.js'
import type { Server } from 'node:net'

describe('control socket', () => {
  let dir: string
  let path: string
  let server: Server

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'llmesh-control-'))
    path = join(dir, 'control.sock')
    server = await listenControlSocket(path, async (request) => {
      if (request.op === 'echo') return { echoed: request.value }
      throw new Error(`unknown op ${request.op}`)
    })
  })
  after(async () => {
    server.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('is a 0600 socket answering one JSON request per connection', async () => {
    assert.equal((await stat(path)).mode & 0o777, 0o600)
    assert.deepEqual(await controlRequest(path, dir, { op: 'echo', value: 42 }), { echoed: 42 })
  })

  it('turns a handler error into ControlRequestError with its message', async () => {
    await assert.rejects(controlRequest(path, dir, { op: 'nope' }), (err: Error) => err instanceof ControlRequestError && err.message === 'unknown op nope')
  })

  it('refuses to start a second node on the same socket', async () => {
    await assert.rejects(listenControlSocket(path, async () => null), DataDirError)
  })

  it('says that no node runs when nothing listens', async () => {
    await assert.rejects(controlRequest(join(dir, 'absent.sock'), dir, { op: 'echo' }), NodeNotRunningError)
  })
})
