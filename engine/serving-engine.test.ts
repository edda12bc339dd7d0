import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { EngineDisposedError, EngineUnavailableError } from './errors.js'
import { loadLocalEngine } from './local-engine.js'
import { ServingEngine } from './serving-engine.js'
import { writeTestModel, type TestModel } from './test-support/write-test-model.js'

const PROMPT = 'Hello, mesh.'
const CONTEXT_SIZE = 256

async function tokensOf (engine: ServingEngine): Promise<number[]> {
  const tokens: number[] = []
  for await (const piece of engine.generate(PROMPT, { maxTokens: 8, ignoreEos: true })) tokens.push(piece.token)
  return tokens
}

describe('serving engine', () => {
  let model: TestModel

  before(async () => { model = await writeTestModel() })
  after(async () => { await model?.remove() })

  it('answers "unavailable" with a retry delay until an engine is loaded, then serves from it', async () => {
    const serving = new ServingEngine(model.path, CONTEXT_SIZE)
    try {
      assert.equal(serving.state, 'loading')
      await assert.rejects(tokensOf(serving), (err: Error) => err instanceof EngineUnavailableError && err.retryAfterSeconds > 0)
      await serving.replace(async () => await loadLocalEngine({ modelPath: model.path, contextSize: CONTEXT_SIZE }))
      assert.equal(serving.state, 'ready')
      assert.equal(serving.kind, 'local')
      assert.equal((await tokensOf(serving)).length, 8)
    } finally {
      await serving.dispose()
    }
  })

  it('serves the same tokens after swapping in a new engine for the same model', async () => {
    const serving = new ServingEngine(model.path, CONTEXT_SIZE)
    try {
      await serving.replace(async () => await loadLocalEngine({ modelPath: model.path, contextSize: CONTEXT_SIZE }))
      const before = await tokensOf(serving)
      await serving.replace(async () => await loadLocalEngine({ modelPath: model.path, contextSize: CONTEXT_SIZE }), 'a member joined')
      assert.deepEqual(await tokensOf(serving), before)
    } finally {
      await serving.dispose()
    }
  })

  it('reports why it cannot serve when loading fails or the plan does not fit', async () => {
    const serving = new ServingEngine(model.path, CONTEXT_SIZE)
    try {
      await assert.rejects(serving.replace(async () => { throw new Error('rpc-server on worker-1 is gone') }))
      assert.equal(serving.state, 'unavailable')
      assert.match(serving.reason, /rpc-server on worker-1 is gone/)
      await serving.markUnavailable('the plan lacks 1.2 GiB on the workers')
      await assert.rejects(tokensOf(serving), (err: Error) => err instanceof EngineUnavailableError && /lacks 1\.2 GiB/.test(err.message))
    } finally {
      await serving.dispose()
    }
  })

  it('counts running generations and says when none runs', async () => {
    const serving = new ServingEngine(model.path, CONTEXT_SIZE)
    try {
      await serving.replace(async () => await loadLocalEngine({ modelPath: model.path, contextSize: CONTEXT_SIZE }))
      await serving.whenIdle()
      const generation = serving.generate(PROMPT, { maxTokens: 4, ignoreEos: true })
      await generation.next()
      assert.equal(serving.activeGenerations, 1)
      let idle = false
      const whenIdle = serving.whenIdle().then(() => { idle = true })
      await new Promise(resolve => setImmediate(resolve))
      assert.equal(idle, false, 'not idle while a generation runs')
      for (;;) if ((await generation.next()).done === true) break
      await whenIdle
      assert.equal(serving.activeGenerations, 0)
    } finally {
      await serving.dispose()
    }
  })

  it('refuses to generate once disposed', async () => {
    const serving = new ServingEngine(model.path, CONTEXT_SIZE)
    await serving.replace(async () => await loadLocalEngine({ modelPath: model.path, contextSize: CONTEXT_SIZE }))
    await serving.dispose()
    assert.equal(serving.state, 'stopped')
    await assert.rejects(tokensOf(serving), EngineDisposedError)
  })
})
