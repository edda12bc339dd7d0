import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseBuildProgress } from './build-step.js'
import { buildKey } from './cache.js'
import { cmakeFlags } from './build-options.js'

describe('llama.cpp build', () => {
  it('reads progress from ninja and make output', () => {
    assert.deepEqual(parseBuildProgress('[17/342] Building CXX object src/llama.cpp.o'), { completed: 17, total: 342 })
    assert.deepEqual(parseBuildProgress('[ 42%] Building CXX object src/llama.cpp.o'), { completed: 42, total: 100 })
    assert.equal(parseBuildProgress('-- Configuring done'), undefined)
  })

  it('keys the cache by llama.cpp tag and build flags', () => {
    const cpu = buildKey('v0.4.0', cmakeFlags('none'))
    assert.equal(buildKey('v0.4.0', cmakeFlags('none')), cpu)
    assert.notEqual(buildKey('v0.4.0', cmakeFlags('cuda')), cpu)
    assert.notEqual(buildKey('v0.4.1', cmakeFlags('none')), cpu)
    assert.match(cpu, /^v0\.4\.0-[0-9a-f]{12}$/)
  })

  it('builds the RPC backend without libcurl', () => {
    for (const backend of ['none', 'cuda', 'vulkan'] as const) {
      const flags = cmakeFlags(backend)
      assert.ok(flags.includes('-DGGML_RPC=ON'))
      assert.ok(flags.includes('-DLLAMA_CURL=OFF'))
    }
    assert.ok(cmakeFlags('cuda').includes('-DGGML_CUDA=ON'))
    assert.ok(cmakeFlags('vulkan').includes('-DGGML_VULKAN=ON'))
  })
})
