// A worker SIGKILLed during a streaming greedy completion through the API: the client's stream
// goes on after the coordinator re-planned, and its text is the undisturbed run's.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { benchFailover } from '../tools/bench/failover-bench.js'

const TOKENS = 96

describe('a stream in progress when a worker dies', { timeout: 900_000 }, () => {
  it('completes on the re-planned engine with the same text as an undisturbed run', async () => {
    // Eight layers: the plan gives the coordinator and both workers some; 256 wide keeps it quick.
    const report = await benchFailover({ tokens: TOKENS, killAfterTokens: TOKENS / 4, model: { layers: 8, embd: 256, ff: 512, heads: 4, kvHeads: 4, type: 'f16' } })
    console.log(`failover: ${JSON.stringify(report)}`)
    assert.equal(report.tokensInAll, TOKENS, 'the stream delivered every token')
    assert.equal(report.result.identical_output, true, 'the resumed stream has the undisturbed text')
    // The layers the survivor keeps come from its tensor cache, not across the network again.
    const { before, after } = report.survivorLayers
    const kept = Math.min(before.first + before.count, after.first + after.count) - Math.max(before.first, after.first)
    if (kept > 0) assert.ok(report.survivorUpload.reload.tensorCacheHitBytes > 0, `the reload sent the survivor everything again: ${JSON.stringify(report.survivorUpload)}`)
  })
})
