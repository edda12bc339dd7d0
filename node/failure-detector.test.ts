import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { FailureDetector } from './failure-detector.js'

function record (detector: FailureDetector): string[] {
  const events: string[] = []
  for (const name of ['join', 'leave', 'suspect', 'dead', 'failed', 'revoked'] as const) {
    detector.on(name, (peer: string) => { events.push(`${name}:${peer}`) })
  }
  return events
}

describe('failure detector', () => {
  it('goes alive -> suspect -> dead with silence and back to alive (join) on contact', () => {
    const detector = new FailureDetector({ suspectAfterMs: 2500, deadAfterMs: 4500 })
    const events = record(detector)
    detector.seen('a', 0)
    detector.tick(2000)
    assert.equal(detector.state('a'), 'alive')
    detector.tick(2600)
    assert.equal(detector.state('a'), 'suspect')
    detector.tick(4600)
    assert.equal(detector.state('a'), 'dead')
    detector.seen('a', 5000)
    assert.equal(detector.state('a'), 'alive')
    assert.deepEqual(events, ['join:a', 'suspect:a', 'dead:a', 'join:a'])
  })

  it('a heartbeat clears suspicion without a new join', () => {
    const detector = new FailureDetector()
    const events = record(detector)
    detector.seen('a', 0)
    detector.suspect('a')
    detector.seen('a', 100)
    assert.equal(detector.state('a'), 'alive')
    assert.deepEqual(events, ['join:a', 'suspect:a'])
  })

  it('keeps a revoked member revoked whatever it sends', () => {
    const detector = new FailureDetector()
    const events = record(detector)
    detector.seen('a', 0)
    detector.revoked('a')
    detector.seen('a', 10)
    detector.tick(10_000)
    assert.equal(detector.state('a'), 'revoked')
    assert.deepEqual(events, ['join:a', 'revoked:a'])
  })

  it('reports a clean leave once', () => {
    const detector = new FailureDetector()
    const events = record(detector)
    detector.seen('a', 0)
    detector.left('a')
    detector.left('a')
    assert.deepEqual(events, ['join:a', 'leave:a'])
  })

  it('declares a failed member dead at once and ignores its heartbeats until the hold-off ends', () => {
    const detector = new FailureDetector()
    const events = record(detector)
    detector.seen('a', 0)
    detector.fail('a', 'tunnel stalled', 10_000, 100)
    assert.equal(detector.state('a'), 'dead')
    detector.seen('a', 5000)
    detector.tick(5000)
    assert.equal(detector.state('a'), 'dead', 'a heartbeat during the hold-off does not bring it back')
    detector.fail('a', 'again', 10_000, 6000)
    detector.seen('a', 12_000)
    assert.equal(detector.state('a'), 'dead', 'a second failure extends the hold-off')
    detector.seen('a', 16_001)
    assert.equal(detector.state('a'), 'alive')
    assert.deepEqual(events, ['join:a', 'failed:a', 'join:a'])
  })

  it('ignores failures of members it never saw or that were revoked', () => {
    const detector = new FailureDetector()
    const events = record(detector)
    detector.fail('stranger', 'tunnel stalled', 1000)
    detector.seen('b', 0)
    detector.revoked('b')
    detector.fail('b', 'tunnel stalled', 1000)
    assert.equal(detector.state('stranger'), undefined)
    assert.equal(detector.state('b'), 'revoked')
    assert.deepEqual(events, ['join:b', 'revoked:b'])
  })
})
