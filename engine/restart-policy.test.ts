import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { RestartPolicy } from './restart-policy.js'

describe('restart policy', () => {
  it('restarts after 1, 2, 4 and 8 s and gives up at the fifth crash within a minute', () => {
    const policy = new RestartPolicy()
    const delays: number[] = []
    let now = 0
    for (let i = 0; i < 4; i++) {
      const decision = policy.crashed(now)
      assert.equal(decision.action, 'restart')
      if (decision.action === 'restart') delays.push(decision.delayMs)
      now += 1000
    }
    assert.deepEqual(delays, [1000, 2000, 4000, 8000])
    const fifth = policy.crashed(now)
    assert.equal(fifth.action, 'give-up')
    assert.equal(fifth.crashes, 5)
    assert.match(fifth.action === 'give-up' ? fifth.reason : '', /crashed 5 times within 60 s/)
  })

  it('caps the delay at 16 s', () => {
    const policy = new RestartPolicy({ maxCrashes: 10 })
    const delays = Array.from({ length: 7 }, (_, i) => policy.crashed(i * 100)).map(d => d.action === 'restart' ? d.delayMs : -1)
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16_000, 16_000, 16_000])
  })

  it('forgets crashes older than the window, so rare crashes always restart quickly', () => {
    const policy = new RestartPolicy()
    for (let i = 0; i < 20; i++) {
      const decision = policy.crashed(i * 61_000)
      assert.deepEqual(decision, { action: 'restart', delayMs: 1000, crashes: 1 })
    }
  })

  it('counts only the crashes inside the window', () => {
    const policy = new RestartPolicy()
    policy.crashed(0)
    policy.crashed(10_000)
    policy.crashed(20_000)
    // At 65 s the crash at 0 s has left the window: this is the third crash in it, not the fourth.
    assert.deepEqual(policy.crashed(65_000), { action: 'restart', delayMs: 4000, crashes: 3 })
  })

  it('starts over after reset', () => {
    const policy = new RestartPolicy()
    for (let i = 0; i < 4; i++) policy.crashed(i)
    policy.reset()
    assert.deepEqual(policy.crashed(10), { action: 'restart', delayMs: 1000, crashes: 1 })
  })
})
