import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isPeerAddress, resolvePeerAddress } from './static-peers.js'

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
})
