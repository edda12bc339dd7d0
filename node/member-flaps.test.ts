import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { FailureDetector } from './failure-detector.js'
import { FLAP_WINDOW_MS, MemberFlaps } from './member-flaps.js'

describe('member flaps', () => {
  it('counts each outage once and forgets those older than the window', () => {
    const detector = new FailureDetector({ suspectAfterMs: 100, deadAfterMs: 200 })
    const flaps = new MemberFlaps(detector)
    const t0 = 1_000_000
    // One outage seen by the detector: suspect, then dead, then back.
    detector.seen('p', t0)
    detector.tick(t0 + 150)
    detector.tick(t0 + 250)
    assert.equal(flaps.count('p'), 1)
    assert.equal(detector.state('p'), 'dead')
    // Two more outages, minutes apart.
    flaps.lost('p', Date.now() + 60_000)
    flaps.lost('p', Date.now() + 120_000)
    assert.equal(flaps.count('p', Date.now() + 120_000), 3)
    assert.equal(flaps.count('p', Date.now() + FLAP_WINDOW_MS + 60_001), 1)
    assert.equal(flaps.count('other'), 0)
  })
})
