import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { localCapabilities, measureComputeGflops } from './capabilities.js'

describe('local capabilities', () => {
  it('offers the speed of the threads the node computes with', () => {
    // A coordinator whose llama-servers run one thread each is weighed as one thread, not as the machine.
    assert.equal(localCapabilities('b1', { computeThreads: 1, memoryBytes: 1, threadGflops: 2.5 }).computeGflops, 2.5)
    assert.equal(localCapabilities('b1', { computeThreads: 4, memoryBytes: 1, threadGflops: 2.5 }).computeGflops, 10)
  })

  it('measures a speed the scheduler accepts', () => {
    assert.ok(measureComputeGflops(10) > 0)
  })
})
