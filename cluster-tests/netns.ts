import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** Two network namespaces joined by a veth pair, with addresses only inside them. */
export interface NamespacePair {
  names: [string, string]
  addresses: [string, string]
}

/** Runs `ip ARGS`, throwing with ip's own message on failure. */
async function ip (...args: string[]): Promise<void> {
  await run('ip', args)
}

/**
 * Creates two namespaces linked by a veth pair (10.99.<n>.1/24 and .2/24). Returns
 * undefined when the system refuses `ip netns` (no privilege), so callers can skip.
 */
export async function createNamespacePair (tag: string): Promise<NamespacePair | undefined> {
  const names: [string, string] = [`llmesh-${tag}-a`, `llmesh-${tag}-b`]
  const subnet = 10 + (process.pid % 200)
  const addresses: [string, string] = [`10.99.${subnet}.1`, `10.99.${subnet}.2`]
  try {
    await ip('netns', 'add', names[0])
  } catch {
    return undefined
  }
  try {
    await ip('netns', 'add', names[1])
    await ip('link', 'add', `${tag}a`, 'netns', names[0], 'type', 'veth', 'peer', 'name', `${tag}b`, 'netns', names[1])
    for (const i of [0, 1] as const) {
      const dev = `${tag}${i === 0 ? 'a' : 'b'}`
      await ip('-n', names[i], 'link', 'set', 'lo', 'up')
      await ip('-n', names[i], 'addr', 'add', `${addresses[i]}/24`, 'dev', dev)
      await ip('-n', names[i], 'link', 'set', dev, 'up', 'multicast', 'on')
      // Without a default route, multicast (mDNS) needs its own route to leave the namespace.
      await ip('-n', names[i], 'route', 'add', '224.0.0.0/4', 'dev', dev)
    }
  } catch (err) {
    await deleteNamespacePair({ names, addresses })
    throw err
  }
  return { names, addresses }
}

/** Deletes both namespaces (the veth pair goes with them); never throws. */
export async function deleteNamespacePair (pair: NamespacePair): Promise<void> {
  for (const name of pair.names) await ip('netns', 'del', name).catch(() => {})
}

/** Namespaces on one LAN: each host has one address on a bridge in a namespace of its own. */
export interface NamespaceLan {
  hosts: string[]
  addresses: string[]
  bridge: string
}

/**
 * Creates `count` host namespaces plugged into a bridge (in its own namespace, so the machine's
 * own network is never touched), 10.98.<n>.1.. /24, multicast routed onto the LAN for mDNS.
 * Returns undefined when the system refuses `ip netns` (no privilege), so callers can skip.
 */
export async function createNamespaceLan (tag: string, count: number): Promise<NamespaceLan | undefined> {
  const bridge = `llmesh-${tag}-lan`
  const hosts = Array.from({ length: count }, (_, i) => `llmesh-${tag}-${i}`)
  const subnet = 10 + (process.pid % 200)
  const addresses = hosts.map((_, i) => `10.98.${subnet}.${i + 1}`)
  try {
    await ip('netns', 'add', bridge)
  } catch {
    return undefined
  }
  const lan = { hosts, addresses, bridge }
  try {
    await ip('-n', bridge, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0')
    await ip('-n', bridge, 'link', 'set', 'br0', 'up')
    for (const [i, host] of hosts.entries()) {
      await ip('netns', 'add', host)
      // veth names have at most 15 characters: the tag keeps them unique between test runs.
      await ip('link', 'add', `${tag}h${i}`, 'netns', host, 'type', 'veth', 'peer', 'name', `${tag}p${i}`, 'netns', bridge)
      await ip('-n', bridge, 'link', 'set', `${tag}p${i}`, 'master', 'br0', 'up')
      await ip('-n', host, 'link', 'set', 'lo', 'up')
      await ip('-n', host, 'addr', 'add', `${addresses[i]}/24`, 'dev', `${tag}h${i}`)
      await ip('-n', host, 'link', 'set', `${tag}h${i}`, 'up', 'multicast', 'on')
      await ip('-n', host, 'route', 'add', '224.0.0.0/4', 'dev', `${tag}h${i}`)
    }
  } catch (err) {
    await deleteNamespaceLan(lan)
    throw err
  }
  return lan
}

/** Deletes every namespace of the LAN (veth pairs and the bridge go with them); never throws. */
export async function deleteNamespaceLan (lan: NamespaceLan): Promise<void> {
  for (const name of [...lan.hosts, lan.bridge]) await ip('netns', 'del', name).catch(() => {})
}
