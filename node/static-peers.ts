import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'

/**
 * Turns one --peer value into dialable multiaddrs: a multiaddr is kept, `host:port` is
 * resolved through DNS to every address it names (so a Kubernetes headless service
 * lists all its pods).
 */
export async function resolvePeerAddress (value: string): Promise<Multiaddr[]> {
  if (value.startsWith('/')) return [multiaddr(value)]
  const match = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(value)
  if (match == null) throw new Error(`peer address "${value}" is neither a multiaddr nor host:port`)
  const [, host, port] = match
  const addresses = isIP(host) !== 0 ? [{ address: host, family: isIP(host) }] : await lookup(host, { all: true })
  return addresses.map(a => multiaddr(`/${a.family === 6 ? 'ip6' : 'ip4'}/${a.address}/tcp/${port}`))
}

/** Checks a --peer value's syntax without resolving it (for argument parsing). */
export function isPeerAddress (value: string): boolean {
  if (value.startsWith('/')) {
    try {
      multiaddr(value)
      return true
    } catch {
      return false
    }
  }
  return /^\[?[^\]]+?\]?:\d{1,5}$/.test(value)
}
