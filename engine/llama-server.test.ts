import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Engine, GeneratedPiece, GenerateOptions } from './engine.js'
import { EngineOptionsError } from './errors.js'
import { NotGgufError } from './gguf/index.js'
import { startLlamaServer, type LlamaServer } from './llama-server.js'
import { loadLocalEngine, type LocalEngine } from './local-engine.js'
import { writeTestModel, type TestModel } from './test-support/write-test-model.js'

const PROMPT = 'The quick brown fox jumps over the lazy dog.'

async function tokensOf (engine: Engine, options: GenerateOptions): Promise<number[]> {
  const pieces: GeneratedPiece[] = []
  for await (const piece of engine.generate(PROMPT, options)) pieces.push(piece)
  return pieces.map(p => p.token)
}

function isRunning (pid: number | undefined): boolean {
  if (pid === undefined) return false
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

// Needs the tools `mesh setup` builds; findLlamaCppTools() says so when they are missing.
describe('llama-server child and the local engine', () => {
  let model: TestModel
  let local: LocalEngine
  let server: LlamaServer
  // A random-weight model strings lone UTF-8 bytes together, and llama-server does not report the
  // ids of an incomplete character's tokens; token ids are compared on whole characters only.
  let bannedTokens: number[]

  before(async () => {
    model = await writeTestModel()
    local = await loadLocalEngine({ modelPath: model.path })
    bannedTokens = local.partialCharacterTokens()
    server = await startLlamaServer({ modelPath: model.path, listen: { socketPath: join(model.dir, 'llama-server.sock') } })
  })

  after(async () => {
    await server?.dispose()
    await local?.dispose()
    await model?.remove()
  })

  it('generates the same 32 greedy tokens as the local engine, at the same thread count', async () => {
    assert.equal(server.threads, local.threads)
    const options = { maxTokens: 32, ignoreEos: true, bannedTokens }
    const fromServer = await tokensOf(server, options)
    const fromLocal = await tokensOf(local, options)
    assert.equal(fromServer.length, 32)
    assert.deepEqual(fromServer, fromLocal)
  })

  it('agrees with the local engine on where generation ends when end-of-generation counts', async () => {
    const options = { maxTokens: 32, bannedTokens }
    assert.deepEqual(await tokensOf(server, options), await tokensOf(local, options))
  })

  it('bans the tokens it is told to ban', async () => {
    const free = await tokensOf(server, { maxTokens: 8, ignoreEos: true, bannedTokens })
    const banned = await tokensOf(server, { maxTokens: 8, ignoreEos: true, bannedTokens: [...bannedTokens, free[0]] })
    assert.notEqual(banned[0], free[0])
  })

  it('stops streaming when aborted', async () => {
    const controller = new AbortController()
    const seen: number[] = []
    await assert.rejects(async () => {
      for await (const piece of server.generate(PROMPT, { maxTokens: 400, ignoreEos: true, bannedTokens, signal: controller.signal })) {
        seen.push(piece.token)
        if (seen.length === 3) controller.abort()
      }
    }, { name: 'AbortError' })
    assert.equal(seen.length, 3, 'no token may arrive after the abort')
    assert.equal((await tokensOf(server, { maxTokens: 4, ignoreEos: true, bannedTokens })).length, 4)
  })

  it('listens on TCP 127.0.0.1 and stops its child with dispose', async () => {
    const tcp = await startLlamaServer({ modelPath: model.path, threads: 1 })
    const pid = tcp.pid
    try {
      assert.ok(isRunning(pid))
      assert.ok(await tcp.isHealthy())
    } finally {
      await tcp.dispose()
    }
    assert.equal(isRunning(pid), false)
    assert.equal(await tcp.isHealthy(), false)
  })

  it('replaces a socket file left by a killed process, and refuses a live one', async () => {
    const path = join(model.dir, 'stale.sock')
    const holder = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)}, () => console.log('ready'))`], { stdio: ['ignore', 'pipe', 'inherit'] })
    try {
      await once(holder.stdout, 'data')
      await assert.rejects(startLlamaServer({ modelPath: model.path, listen: { socketPath: path } }), EngineOptionsError)
    } finally {
      // SIGKILL leaves the socket file behind, as it would for a killed llama-server.
      holder.kill('SIGKILL')
      await once(holder, 'exit')
    }
    assert.ok((await stat(path)).isSocket())
    const again = await startLlamaServer({ modelPath: model.path, threads: 1, listen: { socketPath: path } })
    assert.ok(await again.isHealthy())
    await again.dispose()
    await assert.rejects(stat(path), { code: 'ENOENT' })
  })

  it('refuses a bad model file before starting a child, and a socket path llama-server cannot use', async () => {
    const text = join(model.dir, 'notes.gguf')
    await writeFile(text, 'not a model\n')
    await assert.rejects(startLlamaServer({ modelPath: text }), NotGgufError)
    await assert.rejects(startLlamaServer({ modelPath: model.path, listen: { socketPath: join(model.dir, 'server') } }), EngineOptionsError)
  })
})
