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

/** Timing of RedialBackoff. */
export interface RedialBackoffInit {
  /** delay ceiling after the first failure (default 500 ms) */
  baseMs?: number
  /** largest delay ceiling (default 5000 ms) */
  maxMs?: number
  /** source of jitter in [0, 1) (default Math.random) */
  random?: () => number
}

/**
 * Delays between dials of one static peer: the ceiling doubles with each failure up to a cap,
 * and each delay is drawn from the upper half below it, so that workers that lost the same
 * coordinator do not all redial in the same instant. A success starts over.
 */
export class RedialBackoff {
  readonly #baseMs: number
  readonly #maxMs: number
  readonly #random: () => number
  #failures = 0

  constructor (init: RedialBackoffInit = {}) {
    this.#baseMs = init.baseMs ?? 500
    this.#maxMs = init.maxMs ?? 5000
    this.#random = init.random ?? Math.random
  }

  /** Records a failed dial; returns how long to wait before the next one, in ms. */
  failed (): number {
    const ceiling = Math.min(this.#maxMs, this.#baseMs * 2 ** Math.min(this.#failures, 30))
    this.#failures++
    return Math.round(ceiling / 2 + this.#random() * ceiling / 2)
  }

  /** Records a successful dial: the next failure waits the shortest delay again. */
  succeeded (): void {
    this.#failures = 0
  }
}
