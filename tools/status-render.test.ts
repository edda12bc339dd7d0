import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { renderStatus, STATUS_WIDTH, table } from './status-render.js'
import type { StatusReport } from '../node/status-report.js'

const LONG_PEER = '12D3KooWJnsFhgXoPacj1JsrtcAi3ZQtz14pVgs588JirAboDQqw'

// Everything as long as real values get: IPv6 addresses, a deep model path, long reasons.
const REPORT: StatusReport = {
  self: { peerId: LONG_PEER, role: 'coordinator', clusterId: 'llmesh-f1b04199c909', addresses: [], llamaCppTag: 'b6527', memoryBytes: 8 * 1024 ** 3, apiPort: 8080, tunnelDataChannelPort: null },
  members: [{
    peerId: `${LONG_PEER}x`, role: 'worker', state: 'suspect', addresses: ['/ip6/fd00:1234:5678:9abc:def0:1234:5678:9abc/udp/65535/quic-v1/p2p/12D3KooW'], transport: 'quic', encryption: '/tls',
    rttMs: 1234, lastSeenMs: 59_999, llamaCppTag: 'b6527', memoryBytes: 1023.9 * 1024 ** 3, cpuCores: 64, computeGflops: 100, timePerToken: { computeMs: 1234.5, transferMs: 999.9 }
  }],
  engine: {
    state: 'unavailable', kind: null, model: `/very/deep/${'folder/'.repeat(20)}model-with-a-long-name.gguf`, reason: 'no plan fits the live members: the coordinator needs 12.5 GiB more for the embedding, output head and layer 0 (privacy on)',
    plan: {
      layerCount: 80, contextSize: 131072, parallel: 16, kvCacheType: 'f16', privacy: 'on', coordinatorTensors: ['token_embd.weight', 'output.weight'], unusedWorkers: [LONG_PEER, LONG_PEER],
      stages: [0, 1].map(i => ({ nodeId: i === 0 ? LONG_PEER : `${LONG_PEER}x`, role: i === 0 ? 'coordinator' as const : 'worker' as const, firstLayer: i * 40, layerCount: 40, memory: { weightBytes: 1023.9 * 1024 ** 3, kvCacheBytes: 1, embeddingAndHeadBytes: 1, computeBytes: 1, totalBytes: 1023.9 * 1024 ** 3 }, offeredBytes: 1023.9 * 1024 ** 3 }))
    },
    planTable: 'x',
    slots: 16,
    apiUrl: 'http://[fd00:1234:5678:9abc:def0:1234:5678:9abc]:65535/v1',
    load: { tokensPerSecond: 12345.6, queueDepth: 1000, activeStreams: 1000 }
  },
  rpcServer: null,
  memoryLock: { requested: true, state: 'not allowed', reason: `llama-server: RLIMIT_MEMLOCK is 8388608 bytes, and this process may neither raise it nor lock beyond it (CAP_IPC_LOCK); ${'x'.repeat(100)}` },
  warnings: [{ kind: 'memory', peerId: LONG_PEER, message: 'x'.repeat(300) }]
}

describe('mesh status rendering', () => {
  it('fits 100 columns however long the values', () => {
    const lines = renderStatus(REPORT)
    for (const line of lines) assert.ok(line.length <= STATUS_WIDTH, `${line.length}: ${line}`)
    const text = lines.join('\n')
    assert.match(text, /^model +….*model-with-a-long-name\.gguf$/m, 'a long path keeps its end')
    assert.match(text, /^STAGE +NODE +LAYERS +WEIGHTS +TOTAL +OFFERED +COMPUTE\/TOK +XFER\/TOK$/m)
    assert.match(text, /^1 +12D3KooW…oDQqwx +40-79 .* 1234\.5 ms +999\.9 ms$/m)
    assert.match(text, /^privacy +on: the coordinator keeps layers 0-39, the embedding and the output head$/m)
    assert.match(text, /^load +12345\.6 tokens\/s, 1000 queued, 1000 generating in 16 slots$/m)
    assert.match(text, /^ {2}! x+…$/m)
    assert.match(text, /^engine +unavailable: no plan fits .* for the\n {9}embedding, output head and layer 0 \(privacy on\)$/m, 'a long reason is wrapped, not cut')
    assert.match(text, /^12D3KooW…\S+ +worker +suspect +\[fd00:/m)
    assert.match(text, /^mlock +requested but not allowed by this machine: llama-server: RLIMIT_MEMLOCK is 8388608 bytes/m, 'a refused --mlock says why')
  })

  it('shows each replica group with its load and its stages', () => {
    const plan = REPORT.engine?.plan
    assert.ok(plan != null)
    const groups = [1, 2, 3].map(n => ({ id: n === 3 ? null : String(n + 4), plan, slots: n === 3 ? 0 : 8, activeRequests: n, tokensPerSecond: 10 * n }))
    const report = { ...REPORT, engine: { ...REPORT.engine!, state: 'ready' as const, reason: null, groups, unusedWorkers: [LONG_PEER] } }
    const lines = renderStatus(report)
    for (const line of lines) assert.ok(line.length <= STATUS_WIDTH, `${line.length}: ${line}`)
    const text = lines.join('\n')
    assert.match(text, /^group 1 \(id 5\): 10\.0 tokens\/s, 1 generating in 8 slots$/m)
    assert.match(text, /^group 2 \(id 6\): 20\.0 tokens\/s, 2 generating in 8 slots$/m)
    assert.match(text, /^group 3: not running$/m)
    assert.equal(text.match(/^STAGE +NODE/gm)?.length, 3, 'a stage table per group')
    assert.match(text, /^memory +the coordinator's parts of 3 groups take 3\.0 TiB of the 1023\.9 GiB it offers$/m, 'the coordinator is charged for every group')
    assert.match(text, /^workers in no group: 12D3KooW…/m)
  })

  it('cuts the named column, and only that one, when a table is too wide', () => {
    const rows = table([['A', 'B'], ['a'.repeat(10), 'b'.repeat(10)]], 15, 1)
    assert.deepEqual(rows, ['A           B', 'aaaaaaaaaa  bb…'].map(r => r.trimEnd()))
  })
})
