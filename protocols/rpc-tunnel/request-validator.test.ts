import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { FIXED_REQUEST_BYTES, RpcCommand } from './ggml-rpc.js'
import { RpcHelloExpectedError, RpcMessageTooLargeError, RpcRequestSizeError, RpcTunnelOptionsError, UnknownRpcCommandError } from './errors.js'
import { RpcRequestValidator } from './request-validator.js'
import { rpcRequest } from './test-support/frames.js'

const CAP = 1000


const hello = (): Uint8Array => rpcRequest(RpcCommand.HELLO, 24)

function concat (parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts))
}

/** Feeds `bytes` in chunks of `size` and returns everything let through. */
function feed (validator: RpcRequestValidator, bytes: Uint8Array, size: number): Uint8Array {
  const out: Uint8Array[] = []
  for (let i = 0; i < bytes.length; i += size) out.push(...validator.push(bytes.subarray(i, i + size)))
  return concat(out)
}

describe('ggml-rpc request validator', () => {
  const session = concat([
    hello(),
    rpcRequest(RpcCommand.DEVICE_COUNT, 0),
    rpcRequest(RpcCommand.ALLOC_BUFFER, 12),
    rpcRequest(RpcCommand.SET_TENSOR, 700),
    rpcRequest(RpcCommand.GRAPH_COMPUTE, CAP),
    rpcRequest(RpcCommand.GET_TENSOR, 312)
  ])

  it('lets a valid session through unchanged, however it is split into chunks', () => {
    for (const size of [1, 2, 8, 9, 10, 13, 100, session.length]) {
      assert.deepEqual(feed(new RpcRequestValidator(CAP), session, size), session, `chunks of ${size}`)
    }
  })

  it('reports each request to its observer once it has been let through', () => {
    const seen: string[] = []
    const validator = new RpcRequestValidator(CAP, {
      requestStart: (command, bytes) => seen.push(`start ${command} ${bytes}`),
      requestEnd: (command, bytes) => seen.push(`end ${command} ${bytes}`)
    })
    feed(validator, session, 7)
    assert.deepEqual(seen, [
      'start 14 24', 'end 14 24', 'start 15 0', 'end 15 0', 'start 0 12', 'end 0 12',
      'start 6 700', 'end 6 700', 'start 10 1000', 'end 10 1000', 'start 8 312', 'end 8 312'
    ])
  })

  it('says a message is unfinished before HELLO and part-way through a request, not between requests', () => {
    const validator = new RpcRequestValidator(CAP)
    assert.equal(validator.midMessage, true)
    validator.push(hello())
    assert.equal(validator.midMessage, false)
    const setTensor = rpcRequest(RpcCommand.SET_TENSOR, 400)
    validator.push(setTensor.subarray(0, 4))
    assert.equal(validator.midMessage, true)
    validator.push(setTensor.subarray(4, 20))
    assert.equal(validator.midMessage, true)
    validator.push(setTensor.subarray(20))
    assert.equal(validator.midMessage, false)
  })

  it('refuses a session that does not open with HELLO, and lets none of it through', () => {
    const validator = new RpcRequestValidator(CAP)
    assert.throws(() => validator.push(rpcRequest(RpcCommand.DEVICE_COUNT, 0)), RpcHelloExpectedError)
  })

  it('refuses a second HELLO', () => {
    const validator = new RpcRequestValidator(CAP)
    validator.push(hello())
    assert.throws(() => validator.push(hello()), UnknownRpcCommandError)
  })

  it('refuses every command byte this release does not define, as soon as the byte arrives', () => {
    for (const command of [18, 19, 100, 255]) {
      const validator = new RpcRequestValidator(CAP)
      assert.deepEqual(feed(validator, hello(), 5), hello())
      assert.throws(() => validator.push(Uint8Array.of(command)), UnknownRpcCommandError, `command ${command}`)
    }
  })

  it('refuses a length of 2^40 before any byte of the request is let through', () => {
    for (const command of [RpcCommand.SET_TENSOR, RpcCommand.GRAPH_COMPUTE, RpcCommand.GET_TENSOR]) {
      const validator = new RpcRequestValidator(CAP)
      validator.push(hello())
      const header = rpcRequest(command, 0, 2n ** 40n)
      assert.deepEqual(validator.push(header.subarray(0, 8)), [], 'a partial header is held back')
      assert.throws(() => validator.push(header.subarray(8)), command === RpcCommand.GET_TENSOR ? RpcRequestSizeError : RpcMessageTooLargeError)
    }
  })

  it('names the exact size of a request beyond 2^53 bytes when it refuses it, whole header or split', () => {
    for (const size of [2n ** 53n + 1n, 2n ** 64n - 1n]) {
      for (const split of [false, true]) {
        const validator = new RpcRequestValidator(Number.MAX_SAFE_INTEGER)
        validator.push(hello())
        const header = rpcRequest(RpcCommand.SET_TENSOR, 0, size)
        if (split) validator.push(header.subarray(0, 4))
        assert.throws(() => validator.push(split ? header.subarray(4) : header), (err: Error) => err instanceof RpcMessageTooLargeError && err.message.includes(`announces ${size} bytes`))
      }
    }
  })

  it('lets a variable request of exactly the cap through and refuses one byte more', () => {
    const atCap = new RpcRequestValidator(CAP)
    atCap.push(hello())
    assert.equal(concat(atCap.push(rpcRequest(RpcCommand.SET_TENSOR, CAP))).length, 9 + CAP)
    const over = new RpcRequestValidator(CAP)
    over.push(hello())
    assert.throws(() => over.push(rpcRequest(RpcCommand.SET_TENSOR, CAP + 1)), RpcMessageTooLargeError)
  })

  it('requires the exact struct size of every fixed-size request', () => {
    for (const [command, size] of FIXED_REQUEST_BYTES) {
      if (command === RpcCommand.HELLO) continue
      for (const wrong of [size + 1, size === 0 ? 8 : size - 1]) {
        const validator = new RpcRequestValidator(CAP * 10)
        validator.push(hello())
        assert.throws(() => validator.push(rpcRequest(command, wrong)), RpcRequestSizeError, `command ${command} with ${wrong} bytes`)
      }
    }
    const badHello = new RpcRequestValidator(CAP)
    assert.throws(() => badHello.push(rpcRequest(RpcCommand.HELLO, 16)), RpcRequestSizeError)
  })

  it('keeps refusing after a refusal', () => {
    const validator = new RpcRequestValidator(CAP)
    validator.push(hello())
    assert.throws(() => validator.push(Uint8Array.of(99)), UnknownRpcCommandError)
    assert.throws(() => validator.push(rpcRequest(RpcCommand.DEVICE_COUNT, 0)), UnknownRpcCommandError)
  })

  it('lets nothing of a chunk through when it holds a refused request', () => {
    const validator = new RpcRequestValidator(CAP)
    const out: Uint8Array[] = []
    const chunk = concat([hello(), rpcRequest(RpcCommand.DEVICE_COUNT, 0), Uint8Array.of(200)])
    assert.throws(() => out.push(...validator.push(chunk)), UnknownRpcCommandError)
    assert.deepEqual(out, [], 'nothing of the chunk is returned when it holds a refused request')
  })

  it('rejects a cap that is not a positive whole number', () => {
    for (const cap of [0, -1, 1.5, Number.NaN]) assert.throws(() => new RpcRequestValidator(cap), RpcTunnelOptionsError)
  })
})
