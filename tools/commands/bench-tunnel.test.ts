import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { runMesh } from '../test-support/run-mesh.js'

// Runs the real command (two libp2p peers, the tunnel's bridge and listener, a plain relay) with
// few samples: it checks the output contract of issue 23 and the carrier and transport asked for,
// not the speed: the data channel (what nodes use), and libp2p streams over QUIC (the fallback
// where only QUIC gets through).
describe('mesh bench tunnel', () => {
  for (const [carrier, transport] of [['data-channel', 'tcp'], ['libp2p', 'quic']] as const) {
    it(`prints exactly the documented JSON object (--carrier ${carrier} --transport ${transport})`, async () => {
      const result = await runMesh(['bench', 'tunnel', '--carrier', carrier, '--transport', transport, '--samples', '20', '--bulk-mb', '4', '--json'], { timeoutMs: 120_000 })
      assert.equal(result.code, 0, result.stderr)
      const lines = result.stdout.trim().split('\n')
      assert.equal(lines.length, 1, 'stdout holds one JSON object and nothing else')
      const report = JSON.parse(lines[0]) as Record<string, number | string>
      assert.deepEqual(Object.keys(report), ['tunnel_rtt_p50_us', 'relay_rtt_p50_us', 'ratio', 'bulk_mb_per_s', 'relay_bulk_mb_per_s', 'transport', 'carrier', 'tls_pipe_rtt_p50_us', 'tls_pipe_bulk_mb_per_s'])
      for (const field of ['tunnel_rtt_p50_us', 'relay_rtt_p50_us', 'bulk_mb_per_s', 'relay_bulk_mb_per_s', 'tls_pipe_rtt_p50_us', 'tls_pipe_bulk_mb_per_s'] as const) {
        assert.ok(typeof report[field] === 'number' && report[field] > 0, `${field} is ${report[field]}`)
      }
      assert.equal(report.ratio, (report.tunnel_rtt_p50_us as number) / (report.relay_rtt_p50_us as number))
      assert.equal(report.transport, transport, 'the peers connected over the transport asked for')
      assert.equal(report.carrier, carrier, 'the sessions took the carrier asked for, none fell back')
    })
  }

  it('refuses an unknown transport in one clear line', async () => {
    const result = await runMesh(['bench', 'tunnel', '--transport', 'udp', '--json'])
    assert.equal(result.code, 1)
    assert.equal(result.stdout, '')
    assert.match(result.stderr, /udp/)
  })
})
