// A member that returns while a generation runs is folded back in after that generation ends
// (at most 30 s later), not in its middle: the full plan comes back without a resumed stream.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { bannedTokenBias } from '../tools/bench/failover-bench.js'
import { lineAfter, signalTree, startServingCluster, waitForPlan, type ServingCluster } from './fault-harness.js'
import { TestCluster } from './mesh-harness.js'

const PROMPT = 'The quick brown fox jumps over the lazy dog.'
// Long enough to outlast the worker's return (a few seconds); on a fast machine also short enough
// to end within the 30 s the coordinator waits before it folds a member in regardless.
const TOKENS = 300
/** The longest a returning member waits for a moment without generations (node/coordinator.ts). */
const FOLD_IN_MAX_DELAY_MS = 30_000

describe('a worker that returns during a generation', { timeout: 600_000 }, () => {
  const cluster = new TestCluster()
  let model: TestModel
  let mesh: ServingCluster | undefined

  before(async () => {
    model = await writeTestModel({ layers: 8, embd: 1024, ff: 2816, heads: 16, kvHeads: 4, ctx: 1024 })
    mesh = await startServingCluster(cluster, { modelPath: model.path, workers: 2 })
  })

  after(async () => {
    await mesh?.api.close()
    await cluster.cleanup()
    await model?.remove()
  })

  it('is folded in once the generation has ended, which completes undisturbed', async () => {
    if (mesh === undefined) throw new Error('no cluster')
    const { coordinator, workers, workerIds, api } = mesh
    const logitBias = await bannedTokenBias(model.path)
    await signalTree(workers[0], 'SIGSTOP')
    await waitForPlan(coordinator.home, [workerIds[1]])

    const generating = api.post('/v1/completions', { model: 'model', prompt: PROMPT, max_tokens: TOKENS, temperature: 0, logit_bias: logitBias }, 120_000)
    const returnedFrom = coordinator.lines.length
    await signalTree(workers[0], 'SIGCONT')
    const returnedAt = await lineAfter(coordinator, returnedFrom, /joined|authenticated as worker/, 30_000)

    const answer = await generating
    const answeredAt = Date.now()
    const answeredLine = coordinator.lines.length
    assert.equal(answer.status, 200, answer.body)
    const body = JSON.parse(answer.body) as { usage: { completion_tokens: number } }
    assert.equal(body.usage.completion_tokens, TOKENS, 'the generation ran to its full length')
    assert.ok(returnedAt < answeredAt, 'the worker returned while the generation ran (make the generation longer if not)')
    // The engine may be rebuilt during the generation only once the bounded wait is over (a
    // generation that outlasts it is resumed on the new engine; the full length above shows it was).
    const meanwhile = coordinator.lines.slice(returnedFrom, answeredLine)
    const rebuilt = meanwhile.find(line => /serving with \d+ worker/.test(line))
    if (rebuilt !== undefined) {
      const rebuiltAfterMs = Date.parse(rebuilt.slice(0, rebuilt.indexOf(' '))) - returnedAt
      assert.ok(rebuiltAfterMs >= FOLD_IN_MAX_DELAY_MS, `the engine was rebuilt ${rebuiltAfterMs} ms after the worker returned, during the generation; the coordinator's log meanwhile:\n${meanwhile.join('\n')}`)
    }

    await waitForPlan(coordinator.home, workerIds).catch((err: Error) => {
      throw new Error(`${err.message}\nthe coordinator's log since the worker returned:\n${coordinator.lines.slice(returnedFrom).join('\n')}`)
    })
    console.log(`fold-in: the worker returned ${answeredAt - returnedAt} ms before the generation ended; the engine was rebuilt ${rebuilt === undefined ? 'after it' : 'during it, at the bounded delay'}`)
  })
})
