import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { LATENCY_WINDOW_MS, LatencyWindow } from './latency-window.js'

describe('LatencyWindow', () => {
  it('gives p50 and p99 of the last minute and nothing without observations', () => {
    const window = new LatencyWindow()
    assert.deepEqual(window.percentiles(0), { p50: null, p99: null })
    for (let i = 1; i <= 100; i++) window.add(i / 100, 1000)
    assert.deepEqual(window.percentiles(1000), { p50: 0.5, p99: 0.99 })
  })

  it('forgets observations older than the window', () => {
    const window = new LatencyWindow()
    window.add(9, 0)
    window.add(1, LATENCY_WINDOW_MS)
    assert.deepEqual(window.percentiles(LATENCY_WINDOW_MS), { p50: 1, p99: 9 })
    assert.deepEqual(window.percentiles(LATENCY_WINDOW_MS + 1), { p50: 1, p99: 1 })
    assert.deepEqual(window.percentiles(2 * LATENCY_WINDOW_MS + 1), { p50: null, p99: null })
  })
})
