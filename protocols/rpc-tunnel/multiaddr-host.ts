import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * The IP address in `addr` as node:net takes it for a host, if it has one: an IPv6 link-local
 * address with its zone (`/ip6zone/eth0/ip6/fe80::1` is `fe80::1%eth0`), without which the
 * kernel cannot tell which link it is on and refuses to connect or listen.
 */
export function hostOf (addr: Multiaddr): string | undefined {
  const components = addr.getComponents()
  const ip = components.find(c => c.name === 'ip4' || c.name === 'ip6')
  if (ip?.value === undefined) return undefined
  const zone = ip.name === 'ip6' ? components.find(c => c.name === 'ip6zone')?.value : undefined
  return zone === undefined ? ip.value : `${ip.value}%${zone}`
}
