import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { InvalidArgumentError } from 'commander'
import { parseDuration } from './parse-duration.js'

describe('parseDuration', () => {
  it('reads ms, s, m, h and d', () => {
    assert.equal(parseDuration('500ms'), 500)
    assert.equal(parseDuration('30s'), 30_000)
    assert.equal(parseDuration('1.5m'), 90_000)
    assert.equal(parseDuration('1h'), 3_600_000)
    assert.equal(parseDuration('7d'), 604_800_000)
  })

  it('refuses values without a unit or with an unknown one', () => {
    for (const value of ['10', '1w', 'h', '-1s', '0ms']) assert.throws(() => parseDuration(value), InvalidArgumentError)
  })
})
