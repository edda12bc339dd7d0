import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { statusWarnings, type WarningInput } from './status-warnings.js'
import type { StagePlan } from '../scheduler/index.js'
import type { MemberStatus } from './status-report.js'

const MiB = 1024 * 1024
const SELF = { peerId: 'coordinator', role: 'coordinator' as const, clusterId: 'c', addresses: [], llamaCppTag: 'b1', memoryBytes: 1024 * MiB, apiPort: 8080, tunnelDataChannelPort: null }

function member (peerId: string, fields: Partial<MemberStatus> = {}): MemberStatus {
  return { peerId, role: 'worker', state: 'alive', addresses: [], transport: 'tcp', encryption: '/noise', rttMs: 1, lastSeenMs: 100, llamaCppTag: 'b1', memoryBytes: 1024 * MiB, cpuCores: 2, computeGflops: 10, timePerToken: null, ...fields }
}

function plan (stages: Array<{ nodeId: string, layers: number, totalMiB?: number, offeredMiB?: number }>): StagePlan {
  let first = 0
  return {
    layerCount: stages.reduce((n, s) => n + s.layers, 0),
    contextSize: 512,
    parallel: 1,
    kvCacheType: 'f16',
    privacy: 'on',
    coordinatorTensors: ['token_embd.weight', 'output_norm.weight', 'output.weight'],
    unusedWorkers: [],
    stages: stages.map((s, i) => {
      const stage = {
        nodeId: s.nodeId,
        role: i === 0 ? 'coordinator' as const : 'worker' as const,
        firstLayer: first,
        layerCount: s.layers,
        memory: { weightBytes: 0, kvCacheBytes: 0, embeddingAndHeadBytes: 0, computeBytes: 0, totalBytes: (s.totalMiB ?? 100) * MiB },
        offeredBytes: (s.offeredMiB ?? 1000) * MiB
      }
      first += s.layers
      return stage
    })
  }
}

function input (fields: Partial<WarningInput>): WarningInput {
  return { self: SELF, members: [], plans: [], flaps: () => 0, selfComputeGflops: 10, ...fields }
}

describe('status warnings', () => {
  it('a healthy cluster has none', () => {
    const members = [member('w1'), member('w2')]
    assert.deepEqual(statusWarnings(input({ members, plans: [plan([{ nodeId: 'coordinator', layers: 4 }, { nodeId: 'w1', layers: 4 }, { nodeId: 'w2', layers: 4 }])] })), [])
  })

  it('names the bottleneck stage from measured time per token, or from layers per speed', () => {
    const measured = [member('w1', { timePerToken: { computeMs: 30, transferMs: 2 } }), member('w2', { timePerToken: { computeMs: 8, transferMs: 2 } })]
    const stages = plan([{ nodeId: 'coordinator', layers: 1 }, { nodeId: 'w1', layers: 4 }, { nodeId: 'w2', layers: 4 }])
    const [warning] = statusWarnings(input({ members: measured, plans: [stages] }))
    assert.equal(warning.kind, 'bottleneck')
    assert.equal(warning.peerId, 'w1')
    assert.match(warning.message, /takes 32\.0 ms per token, 3\.2x the next slowest worker/)

    const slow = [member('w1', { computeGflops: 2 }), member('w2')]
    const estimated = statusWarnings(input({ members: slow, plans: [plan([{ nodeId: 'coordinator', layers: 4 }, { nodeId: 'w1', layers: 4 }, { nodeId: 'w2', layers: 4 }])] }))
    assert.deepEqual(estimated.map(w => [w.kind, w.peerId]), [['bottleneck', 'w1']])
  })

  it('warns about a member near its memory limit, a version mismatch and a flapping member', () => {
    const members = [member('w1', { llamaCppTag: 'b2' }), member('w2'), member('w3', { state: 'revoked', llamaCppTag: 'b0' })]
    const warnings = statusWarnings(input({
      members,
      plans: [plan([{ nodeId: 'coordinator', layers: 4 }, { nodeId: 'w1', layers: 4 }, { nodeId: 'w2', layers: 4, totalMiB: 950, offeredMiB: 1000 }])],
      flaps: peer => peer === 'w2' ? 3 : 2
    }))
    assert.deepEqual(warnings.map(w => [w.kind, w.peerId]), [['memory', 'w2'], ['version', 'w1'], ['flapping', 'w2']])
    assert.match(warnings[0].message, /near its memory limit: its stage needs 950\.0 MiB of the 1000\.0 MiB it offers \(95%\)/)
    assert.match(warnings[1].message, /runs llama\.cpp b2, this node b1/)
    assert.match(warnings[2].message, /lost contact 3 times in the last 5 minutes/)
  })

  it('looks at every replica group: a bottleneck in the second, the coordinator charged once per group', () => {
    const members = ['w1', 'w2', 'w3', 'w4'].map(id => member(id, { timePerToken: { computeMs: id === 'w4' ? 40 : 10, transferMs: 0 } }))
    // The coordinator's part of each group fits what it offers, but not twice over.
    const first = plan([{ nodeId: 'coordinator', layers: 1, totalMiB: 600 }, { nodeId: 'w1', layers: 4 }, { nodeId: 'w2', layers: 3 }])
    const second = plan([{ nodeId: 'coordinator', layers: 1, totalMiB: 600 }, { nodeId: 'w3', layers: 4 }, { nodeId: 'w4', layers: 3 }])
    const warnings = statusWarnings(input({ members, plans: [first, second] }))
    assert.deepEqual(warnings.map(w => [w.kind, w.peerId]), [['bottleneck', 'w4'], ['memory', 'coordinator']])
    assert.match(warnings[0].message, /^the stage on w4 in replica group 2 is the bottleneck: it takes 40\.0 ms per token, 4\.0x the next slowest worker/)
    assert.match(warnings[1].message, /near its memory limit: its stages in 2 replica groups need 1\.2 GiB of the 1000\.0 MiB it offers \(120%\)/)
    // One group alone: the same coordinator part is well within its offer, and the message names no group.
    const alone = statusWarnings(input({ members, plans: [second] }))
    assert.deepEqual(alone.map(w => [w.kind, w.peerId]), [['bottleneck', 'w4']])
    assert.match(alone[0].message, /^the stage on w4 is the bottleneck/)
  })

  it('warns about a live worker that offers no memory, and only about that one', () => {
    const warnings = statusWarnings(input({ members: [member('w-given-up', { memoryBytes: 0 }), member('w-lending'), member('w-dead', { state: 'dead', memoryBytes: 0 })] }))
    assert.deepEqual(warnings.map(w => [w.kind, w.peerId]), [['no-memory', 'w-given-up']])
  })
})
