// A worker whose network link goes down is declared dead within 6 s. The coordinator here cannot
// hold the model alone, so the API answers 503 with Retry-After and the missing memory, and
// `mesh status` says why; once the link is back, the worker rejoins and the full plan returns.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { deathLine, lineAfter, memoryTooSmallAlone, setLink, startServingCluster, useNamespacedFaultSuite, waitForPlan, waitForStatus } from './fault-harness.js'

const PROMPT = 'The quick brown fox jumps over the lazy dog.'
const TOKENS = 16
const CONTEXT = 512

describe('a worker cut off by its network link', { timeout: 600_000 }, () => {
  const suite = useNamespacedFaultSuite('f', { layers: 8, ctx: CONTEXT })

  it('is declared dead, the API says how much memory is missing, and the full plan returns with the link', async (t) => {
    const { pair, tag, cluster } = suite
    if (pair === undefined) {
      t.skip('"ip netns add" was refused on this machine (needs root or CAP_NET_ADMIN)')
      return
    }
    const [coordinatorNs, workerNs] = pair.names
    const mesh = suite.mesh = await startServingCluster(cluster, {
      modelPath: suite.model.path,
      workers: 1,
      coordinator: { netns: coordinatorNs, address: pair.addresses[0], memoryBytes: await memoryTooSmallAlone(suite.model.path, CONTEXT) },
      worker: () => ({ netns: workerNs, address: pair.addresses[1] })
    })
    const first = await mesh.api.complete(PROMPT, TOKENS)
    assert.equal(first.status, 200, first.body)

    const from = mesh.coordinator.lines.length
    await setLink(pair, tag, 'down')
    const downAt = Date.now()
    const detectMs = await lineAfter(mesh.coordinator, from, deathLine(mesh.workerIds[0])) - downAt
    console.log(`link-down detection time: ${detectMs} ms`)
    assert.ok(detectMs <= 6000, `detection took ${detectMs} ms`)

    const report = await waitForStatus(mesh.coordinator.home, 'the engine out of service', r => r.engine?.state === 'unavailable')
    assert.match(report.engine?.reason ?? '', /more is needed/, 'mesh status says why the engine cannot serve')
    const refused = await mesh.api.complete(PROMPT, TOKENS)
    assert.equal(refused.status, 503, refused.body)
    assert.ok(Number(refused.headers['retry-after']) > 0, 'Retry-After tells the client when to come back')
    const error = (JSON.parse(refused.body) as { error: { message: string, type: string } }).error
    assert.match(error.message, /at least \S+ .*more is needed/, 'the message names the missing memory')

    const upAt = Date.now()
    await setLink(pair, tag, 'up')
    await waitForPlan(mesh.coordinator.home, mesh.workerIds, 90_000)
    console.log(`link up: full plan back after ${Date.now() - upAt} ms`)
    const again = await mesh.api.complete(PROMPT, TOKENS)
    assert.equal(again.status, 200, again.body)
    assert.equal(again.text, first.text)
  })
})
