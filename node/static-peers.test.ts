import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isPeerAddress, RedialBackoff, resolvePeerAddress } from './static-peers.js'

describe('static peer addresses', () => {
  it('keeps multiaddrs and turns host:port into TCP multiaddrs, resolving DNS names', async () => {
    assert.deepEqual((await resolvePeerAddress('/ip4/10.1.2.3/tcp/9090')).map(String), ['/ip4/10.1.2.3/tcp/9090'])
    assert.deepEqual((await resolvePeerAddress('10.1.2.3:9091')).map(String), ['/ip4/10.1.2.3/tcp/9091'])
    assert.deepEqual((await resolvePeerAddress('[::1]:9092')).map(String), ['/ip6/::1/tcp/9092'])
    const resolved = (await resolvePeerAddress('localhost:9093')).map(String)
    assert.ok(resolved.includes('/ip4/127.0.0.1/tcp/9093') || resolved.includes('/ip6/::1/tcp/9093'), resolved.join(', '))
  })

  it('tells addresses from garbage', () => {
    assert.equal(isPeerAddress('node-1.mesh.svc:9090'), true)
    assert.equal(isPeerAddress('/ip4/1.2.3.4/tcp/1'), true)
    assert.equal(isPeerAddress('/nonsense'), false)
    assert.equal(isPeerAddress('hostname-without-port'), false)
  })

  it('backs off redials exponentially up to the cap, with jitter, and starts over after a success', () => {
    const lowest = new RedialBackoff({ baseMs: 500, maxMs: 5000, random: () => 0 })
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => lowest.failed()), [250, 500, 1000, 2000, 2500, 2500])
    lowest.succeeded()
    assert.equal(lowest.failed(), 250)
    const highest = new RedialBackoff({ baseMs: 500, maxMs: 5000, random: () => 0.999999 })
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => highest.failed()), [500, 1000, 2000, 4000, 5000, 5000])
    const delays = new Set(Array.from({ length: 20 }, () => new RedialBackoff().failed()))
    assert.ok(delays.size > 1, 'default delays are jittered')
    for (const d of delays) assert.ok(d >= 250 && d <= 500, `first delay ${d} ms`)
  })
})
