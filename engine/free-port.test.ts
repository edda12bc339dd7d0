import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { describe, it } from 'node:test'
import { freePort } from './free-port.js'

describe('free ports', () => {
  it('are listenable and lie below the ports the kernel gives outgoing connections', async () => {
    const low = Number((await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')).trim().split(/\s+/)[0])
    for (let i = 0; i < 20; i++) {
      const port = await freePort()
      assert.ok(port >= 1024 && port < low, `port ${port} is outside the ephemeral range from ${low}`)
      const server = createServer()
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen({ host: '127.0.0.1', port }, resolve)
      })
      await new Promise(resolve => server.close(resolve))
    }
  })
})
