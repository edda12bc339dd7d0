import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { Worker } from 'node:worker_threads'
import { nativeSockets } from '../../../node/native-socket.js'
import { NativeSocketEnd } from './native-socket-end.js'

const sockets = nativeSockets()
// The machines llmesh is tested on have a C compiler and node's headers: the addon must build there.
if (sockets.addon === undefined) throw new Error(`the native socket addon cannot be built: ${sockets.why}`)
const addon = sockets.addon

// A TCP server on a thread of its own that reads everything: it keeps draining the connection
// while this thread is blocked.
const READER = `
const { parentPort } = require('node:worker_threads')
const server = require('node:net').createServer(socket => { socket.on('data', () => {}) })
server.listen(0, '127.0.0.1', () => { parentPort.postMessage(server.address().port) })
`

describe('a native socket end waiting for the kernel', () => {
  let reader: Worker
  let port: number

  before(async () => {
    reader = new Worker(READER, { eval: true })
    ;[port] = await once(reader, 'message') as [number]
  })

  after(async () => {
    await reader?.terminate()
  })

  it('calls onceWritable back when a later write finds the kernel ready and sends everything that waited', async () => {
    const socket = connect({ host: '127.0.0.1', port, noDelay: true }).pause()
    await once(socket, 'connect')
    const end = NativeSocketEnd.local(addon, socket as Socket, false)
    try {
      const chunk = Buffer.alloc(1024 * 1024)
      while (end.send(chunk)) { /* until bytes wait for the kernel */ }
      let drained = false
      end.onceWritable(() => { drained = true })
      // This thread stays blocked, so its event loop never sees the socket writable again,
      // while the reader empties the kernel's buffers: a write then takes what waited.
      const sleeper = new Int32Array(new SharedArrayBuffer(4))
      for (let i = 0; i < 200 && end.bufferedBytes > 0; i++) {
        Atomics.wait(sleeper, 0, 0, 25)
        end.send(Buffer.alloc(1))
      }
      assert.equal(end.bufferedBytes, 0, 'the writes sent everything that waited')
      const deadline = Date.now() + 5000
      while (!drained && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
      // A pipe waiting for that callback would hold its sender back for ever.
      assert.ok(drained, 'onceWritable was never called back')
    } finally {
      end.destroy()
    }
  })
})
