// A stand-in for rpc-server and a minimal ggml-rpc client, for `mesh bench tunnel`: they speak
// just enough of the protocol (HELLO, one-way commands, GET_TENSOR) for the worker bridge to
// pass their traffic, and spend no time computing, so that a round trip measures the path alone.
import { connect, createServer, type Server, type Socket } from 'node:net'
import { REQUEST_HEADER_BYTES, RESPONSE_HEADER_BYTES, RpcCommand } from '../../protocols/rpc-tunnel/ggml-rpc.js'
import { listenOnLoopback, type LoopbackServer } from './loopback-server.js'

/** sizeof(rpc_tensor) */
const RPC_TENSOR_BYTES = 296
/** GET_TENSOR's payload: rpc_tensor | offset u64 | size u64 */
const GET_TENSOR_BYTES = RPC_TENSOR_BYTES + 16
/** HELLO's answer: the protocol version, major | minor | patch */
const HELLO_ANSWER_BYTES = 3

function request (command: number, payloadBytes: number): Buffer {
  const bytes = Buffer.alloc(REQUEST_HEADER_BYTES + payloadBytes)
  bytes[0] = command
  bytes.writeBigUInt64LE(BigInt(payloadBytes), 1)
  return bytes
}

function response (payloadBytes: number): Buffer {
  const bytes = Buffer.alloc(RESPONSE_HEADER_BYTES + payloadBytes)
  bytes.writeBigUInt64LE(BigInt(payloadBytes), 0)
  return bytes
}

/** A GET_TENSOR request asking for `bytes` of tensor data. */
export function getTensorRequest (bytes: number): Buffer {
  const message = request(RpcCommand.GET_TENSOR, GET_TENSOR_BYTES)
  message.writeBigUInt64LE(BigInt(bytes), REQUEST_HEADER_BYTES + RPC_TENSOR_BYTES + 8)
  return message
}

/**
 * One decode step's traffic as llama-server sends it to a worker: a GRAPH_COMPUTE (one-way)
 * and the GET_TENSOR of its output, `requestBytes` in all, asking for `responseBytes` of data.
 */
export function tokenStepRequest (requestBytes: number, responseBytes: number): Buffer {
  const read = getTensorRequest(responseBytes)
  const compute = request(RpcCommand.GRAPH_COMPUTE, Math.max(0, requestBytes - read.byteLength - REQUEST_HEADER_BYTES))
  return Buffer.concat([compute, read])
}

/** A SET_TENSOR request carrying `dataBytes` of tensor data. */
export function setTensorRequest (dataBytes: number): Buffer {
  return request(RpcCommand.SET_TENSOR, RPC_TENSOR_BYTES + 8 + dataBytes)
}

/** Serves ggml-rpc sessions on 127.0.0.1: answers HELLO and GET_TENSOR (zeroes of the size asked), ignores one-way commands. */
export async function startRpcStandIn (): Promise<LoopbackServer> {
  const sockets = new Set<Socket>()
  const server: Server = createServer({ noDelay: true }, socket => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    socket.on('error', () => { socket.destroy() })
    const header = Buffer.alloc(REQUEST_HEADER_BYTES)
    let headerFilled = 0
    let payload: Buffer | undefined
    let payloadFilled = 0
    let command = 0
    const answer = (): void => {
      if (command === RpcCommand.HELLO) socket.write(response(HELLO_ANSWER_BYTES))
      // Only the size of GET_TENSOR's payload is read; every byte of a one-way payload is skipped.
      if (command === RpcCommand.GET_TENSOR && payload !== undefined) socket.write(response(Number(payload.readBigUInt64LE(RPC_TENSOR_BYTES + 8))))
    }
    let payloadLeft = 0
    socket.on('data', (chunk: Buffer) => {
      let offset = 0
      while (offset < chunk.length) {
        if (payloadLeft > 0) {
          const n = Math.min(payloadLeft, chunk.length - offset)
          if (payload !== undefined) chunk.copy(payload, payloadFilled, offset, offset + n)
          payloadFilled += n
          payloadLeft -= n
          offset += n
          if (payloadLeft === 0) answer()
          continue
        }
        const n = Math.min(REQUEST_HEADER_BYTES - headerFilled, chunk.length - offset)
        chunk.copy(header, headerFilled, offset, offset + n)
        headerFilled += n
        offset += n
        if (headerFilled < REQUEST_HEADER_BYTES) continue
        headerFilled = 0
        command = header[0]
        payloadLeft = Number(header.readBigUInt64LE(1))
        payloadFilled = 0
        payload = command === RpcCommand.GET_TENSOR ? Buffer.alloc(payloadLeft) : undefined
        if (payloadLeft === 0) answer()
      }
    })
  })
  return await listenOnLoopback(server, sockets)
}

/** A ggml-rpc client session that sends requests and waits for a known number of response bytes. */
export class RpcBenchClient {
  readonly #socket: Socket
  #expected = 0
  #received = 0
  #pending: { resolve: () => void, reject: (err: Error) => void } | undefined
  #failure: Error | undefined

  private constructor (socket: Socket) {
    this.#socket = socket
    socket.on('data', (chunk: Buffer) => {
      this.#received += chunk.byteLength
      if (this.#received >= this.#expected) this.#settle()
    })
    socket.on('error', err => { this.#failure ??= err })
    socket.on('close', () => {
      this.#failure ??= new Error('the session closed before its answer came')
      this.#settle(this.#failure)
    })
  }

  #settle (err?: Error): void {
    const pending = this.#pending
    this.#pending = undefined
    if (err === undefined) pending?.resolve()
    else pending?.reject(err)
  }

  /** Connects to `port` on 127.0.0.1 and opens the session with HELLO. */
  static async open (port: number): Promise<RpcBenchClient> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port, noDelay: true }, () => {
        s.off('error', reject)
        resolve(s)
      })
      s.once('error', reject)
    })
    const client = new RpcBenchClient(socket)
    await client.exchange([request(RpcCommand.HELLO, 24)], RESPONSE_HEADER_BYTES + HELLO_ANSWER_BYTES)
    return client
  }

  /** Writes `messages` (waiting for the socket to drain when it is full) and resolves when `responseBytes` more bytes came back. */
  async exchange (messages: readonly Uint8Array[], responseBytes: number): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure
    const socket = this.#socket
    const answered = new Promise<void>((resolve, reject) => {
      this.#expected = this.#received + responseBytes
      this.#pending = { resolve, reject }
    })
    for (const message of messages) {
      // A session that fails meanwhile ends the wait for drain too.
      if (!socket.write(message)) await Promise.race([new Promise<void>(resolve => socket.once('drain', resolve)), answered])
    }
    await answered
  }

  close (): void {
    this.#socket.destroy()
  }
}
