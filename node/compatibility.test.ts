import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { checkCompatible } from './compatibility.js'
import { IncompatibleNodeError } from './errors.js'
import { LOCAL_FEATURES } from './features.js'

describe('node compatibility', () => {
  it('accepts the same llama.cpp tag and features', () => {
    checkCompatible({ llamaCppTag: 'b100', features: LOCAL_FEATURES }, { llamaCppTag: 'b100', features: LOCAL_FEATURES }, 'node X')
  })

  it('refuses another llama.cpp tag with a message naming both versions', () => {
    assert.throws(() => { checkCompatible({ llamaCppTag: 'b100', features: LOCAL_FEATURES }, { llamaCppTag: 'b99', features: LOCAL_FEATURES }, 'node X') },
      (err: Error) => err instanceof IncompatibleNodeError && /node X runs llama.cpp b99 but this node runs llama.cpp b100/.test(err.message))
  })

  it('refuses a node lacking a required feature', () => {
    assert.throws(() => { checkCompatible({ llamaCppTag: 'b100', features: LOCAL_FEATURES }, { llamaCppTag: 'b100', features: 0 }, 'node X') }, IncompatibleNodeError)
  })
})
