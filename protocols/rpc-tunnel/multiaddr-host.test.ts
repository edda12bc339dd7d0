import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { hostOf } from './multiaddr-host.js'

describe('the host of a multiaddr', () => {
  it('is its IPv4 or IPv6 address, an IPv6 link-local one with its zone', () => {
    assert.equal(hostOf(multiaddr('/ip4/192.168.1.7/tcp/4001')), '192.168.1.7')
    assert.equal(hostOf(multiaddr('/ip6/2001:db8::7/tcp/4001/p2p/12D3KooWPAi8KRCCw6maobxYHt2iMZDzaxBygrUNBVvo7TBfViCH')), '2001:db8::7')
    assert.equal(hostOf(multiaddr('/ip6zone/eth0/ip6/fe80::1/tcp/4001')), 'fe80::1%eth0')
    assert.equal(hostOf(multiaddr('/ip6zone/wlan0/ip6/fe80::abcd/udp/4001/quic-v1')), 'fe80::abcd%wlan0')
  })

  it('is none for a name that still needs resolving', () => {
    assert.equal(hostOf(multiaddr('/dns4/example.com/tcp/4001')), undefined)
  })
})
