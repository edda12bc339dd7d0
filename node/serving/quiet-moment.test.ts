import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { loadLocalEngine } from '../../engine/local-engine.js'
import { ServingEngine } from '../../engine/serving-engine.js'
import { writeTestModel, type TestModel } from '../../engine/test-support/write-test-model.js'
import { quietMoment } from './quiet-moment.js'

describe('quiet moment before folding a member in', () => {
  let model: TestModel
  let serving: ServingEngine

  before(async () => {
    model = await writeTestModel()
    serving = new ServingEngine(model.path, 512)
    await serving.replace(async () => await loadLocalEngine({ modelPath: model.path, contextSize: 512 }))
  })
  after(async () => {
    await serving.dispose()
    await model.remove()
  })

  /** A generation that has produced its first piece and waits for the caller to pull more. */
  async function streamInProgress (): Promise<AsyncGenerator<unknown, unknown, undefined>> {
    const generation = serving.generate('Once upon a time', { maxTokens: 8 })
    await generation.next()
    assert.equal(serving.activeGenerations, 1)
    return generation
  }

  /** True when `promise` settles within `ms`. */
  async function settlesWithin (promise: Promise<void>, ms: number): Promise<boolean> {
    return await Promise.race([promise.then(() => true), new Promise<boolean>(resolve => setTimeout(() => { resolve(false) }, ms))])
  }

  it('comes at once when no generation runs', async () => {
    assert.equal(await settlesWithin(quietMoment(serving, 60_000, new AbortController().signal), 50), true)
  })

  it('waits for a stream in progress to end', async () => {
    const generation = await streamInProgress()
    const quiet = quietMoment(serving, 60_000, new AbortController().signal)
    assert.equal(await settlesWithin(quiet, 300), false, 'the stream is not interrupted')
    for await (const piece of generation) assert.ok(piece !== undefined)
    assert.equal(await settlesWithin(quiet, 1000), true, 'the moment comes when the stream ends')
  })

  it('waits no longer than its bound, and not at all once a loss needs a re-plan', async () => {
    const generation = await streamInProgress()
    assert.equal(await settlesWithin(quietMoment(serving, 100, new AbortController().signal), 1000), true, 'bounded under steady load')
    const loss = new AbortController()
    const quiet = quietMoment(serving, 60_000, loss.signal)
    loss.abort()
    assert.equal(await settlesWithin(quiet, 100), true, 'a loss cuts the wait short')
    await generation.return(undefined)
  })
})
