import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { GroupRouter } from './group-router.js'
import { GroupLostError } from './errors.js'
import { startLlamaServer, type LlamaServer } from './llama-server.js'
import { writeTestModel, type TestModel } from './test-support/write-test-model.js'
import type { GeneratedPiece } from './engine.js'

const PROMPT = 'The quick brown fox jumps over the lazy dog.'
const TOKENS = 24

const active = (router: GroupRouter): Record<string, number> => Object.fromEntries(router.loads().map(load => [load.group, load.active]))

// Two real llama-servers of one slot each stand for two replica groups.
describe('the replica group router', () => {
  let model: TestModel
  let slow: LlamaServer
  let fast: LlamaServer

  before(async () => {
    model = await writeTestModel({ layers: 2, ctx: 4096 })
    ;[slow, fast] = await Promise.all([0, 1].map(async () => await startLlamaServer({ modelPath: model.path, threads: 1 })))
  })

  after(async () => {
    await Promise.all([slow, fast].map(async server => { await server?.dispose() }))
    await model?.remove()
  })

  it('sends a generation to the group with the fewest running, then to the faster one, and counts slots together', async () => {
    const router = new GroupRouter(model.path, 512)
    router.add('slow', slow, 1)
    router.add('fast', fast, 2)
    assert.equal(router.slots, 2)
    const first = router.generate(PROMPT, { maxTokens: TOKENS, ignoreEos: true })
    await first.next()
    assert.deepEqual(active(router), { slow: 0, fast: 1 }, 'equally idle: the faster group')
    const second = router.generate(PROMPT, { maxTokens: TOKENS, ignoreEos: true })
    await second.next()
    assert.deepEqual(active(router), { slow: 1, fast: 1 }, 'the group running fewer')
    await Promise.all([first.return('stop'), second.return('stop')])
    assert.deepEqual(active(router), { slow: 0, fast: 0 })
  })

  it('fails a generation whose group is lost with GroupLostError, and sends the next one to the group left', async () => {
    const router = new GroupRouter(model.path, 512)
    router.add('slow', slow, 1)
    router.add('fast', fast, 2)
    // Long enough to be still running when its llama-server stops.
    const doomed = router.generate(PROMPT, { maxTokens: 3000, ignoreEos: true })
    await doomed.next()
    await fast.dispose()
    await assert.rejects(async () => { for await (const piece of doomed) void piece }, GroupLostError)
    assert.equal(router.slots, 1, 'the lost group takes no more work')
    const pieces: GeneratedPiece[] = []
    for await (const piece of router.generate(PROMPT, { maxTokens: TOKENS, ignoreEos: true })) pieces.push(piece)
    assert.equal(pieces.length, TOKENS)
    assert.deepEqual(active(router), { slow: 0, fast: 0 })
  })
})
