import { chmod, unlink } from 'node:fs/promises'
import { createConnection, createServer, type Server } from 'node:net'
import { ControlRequestError, DataDirError, NodeNotRunningError } from './errors.js'

/** One control request: an operation and its arguments. */
export interface ControlRequest {
  op: string
  [arg: string]: unknown
}

/** Answers one control request; a thrown Error's message goes back to the client. */
export type ControlHandler = (request: ControlRequest) => Promise<unknown>

// Requests are tiny; anything longer is not a client of ours.
const MAX_REQUEST_BYTES = 64 * 1024

/** True when a node answers on the control socket `path`. */
export async function isAnswering (path: string): Promise<boolean> {
  return new Promise(resolve => {
    const socket = createConnection(path)
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => { resolve(false) })
  })
}

/**
 * Serves newline-delimited JSON on a UNIX socket (mode 0600): one request line in, one
 * response line `{"ok":true,"result":...}` or `{"ok":false,"error":"..."}` out.
 */
export async function listenControlSocket (path: string, handler: ControlHandler): Promise<Server> {
  if (await isAnswering(path)) throw new DataDirError(`another llmesh node is already running on ${path}; stop it first or use another LLMESH_HOME`)
  await unlink(path).catch(() => {})
  const server = createServer(socket => {
    let buffered = ''
    socket.setEncoding('utf8')
    socket.on('error', () => {})
    socket.on('data', (chunk: string) => {
      buffered += chunk
      if (buffered.length > MAX_REQUEST_BYTES) {
        socket.end(JSON.stringify({ ok: false, error: 'control request too long' }) + '\n')
        return
      }
      const newline = buffered.indexOf('\n')
      if (newline < 0) return
      const line = buffered.slice(0, newline)
      socket.removeAllListeners('data')
      void answer(line, handler).then(response => socket.end(JSON.stringify(response) + '\n'))
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    // The mode is set before listen resolves, so no client can connect to a 0644 socket.
    const previous = process.umask(0o177)
    server.listen(path, () => { process.umask(previous); resolve() })
  })
  await chmod(path, 0o600)
  return server
}

async function answer (line: string, handler: ControlHandler): Promise<unknown> {
  try {
    const request = JSON.parse(line) as ControlRequest
    if (typeof request !== 'object' || request === null || typeof request.op !== 'string') throw new Error('control request must be a JSON object with an "op" field')
    return { ok: true, result: await handler(request) }
  } catch (err) {
    return { ok: false, error: (err as Error).message }
  }
}

/** Sends one request to the node whose control socket is `path` and returns its result. */
export async function controlRequest (path: string, dataDirRoot: string, request: ControlRequest, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path)
    let buffered = ''
    const timer = setTimeout(() => { socket.destroy(); reject(new ControlRequestError(`the node on ${path} did not answer within ${timeoutMs} ms`)) }, timeoutMs)
    socket.setEncoding('utf8')
    socket.once('connect', () => { socket.write(JSON.stringify(request) + '\n') })
    socket.on('data', (chunk: string) => { buffered += chunk })
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      reject(err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? new NodeNotRunningError(dataDirRoot) : err)
    })
    socket.once('end', () => {
      clearTimeout(timer)
      try {
        const response = JSON.parse(buffered) as { ok: boolean, result?: unknown, error?: string }
        if (response.ok) resolve(response.result)
        else reject(new ControlRequestError(response.error ?? 'the node refused the request'))
      } catch {
        reject(new ControlRequestError(`the node on ${path} sent an unreadable answer`))
      }
    })
  })
}
