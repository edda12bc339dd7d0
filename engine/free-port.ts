import { randomInt } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'

/**
 * Where the kernel takes the local ports of outgoing connections (Linux's
 * net.ipv4.ip_local_port_range; this default elsewhere). A port it picks for a listener in
 * that range may be taken by any connection of any process before its user listens on it.
 */
const EPHEMERAL_PORTS_FILE = '/proc/sys/net/ipv4/ip_local_port_range'
const DEFAULT_EPHEMERAL_LOW = 32768
/** Free ports are sought from here up to the ephemeral range: above the well-known services. */
const LOWEST_PORT = 10000
const TRIES = 50

async function ephemeralLow (): Promise<number> {
  const text = await readFile(EPHEMERAL_PORTS_FILE, 'utf8').catch(() => '')
  const low = Number(text.trim().split(/\s+/)[0])
  return Number.isInteger(low) && low > 0 ? low : DEFAULT_EPHEMERAL_LOW
}

/** Listens on 127.0.0.1:`port` (0: the kernel picks) and closes again; the port, or undefined when it is taken. */
async function tryPort (port: number): Promise<number | undefined> {
  const server = createServer()
  const listening = await new Promise<boolean>(resolve => {
    server.once('error', () => { resolve(false) })
    server.listen({ host: '127.0.0.1', port }, () => { resolve(true) })
  })
  if (!listening) return undefined
  const { port: bound } = server.address() as AddressInfo
  await new Promise(resolve => server.close(resolve))
  return bound
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago (another process may take it before it
 * is used), below the ephemeral range so that no outgoing connection takes it in between.
 */
export async function freePort (): Promise<number> {
  const low = await ephemeralLow()
  for (let i = 0; low - LOWEST_PORT > TRIES && i < TRIES; i++) {
    const port = await tryPort(randomInt(LOWEST_PORT, low))
    if (port !== undefined) return port
  }
  // A machine whose ephemeral range starts this low: the kernel's pick.
  const port = await tryPort(0)
  if (port === undefined) throw new Error('cannot listen on 127.0.0.1 to find a free port')
  return port
}
