import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Registry } from 'prom-client'
import { RpcTensorCacheMissError, UnknownRpcCommandError } from './errors.js'
import { LLAMA_RPC_HASH_THRESHOLD_BYTES, RpcCommand, SET_TENSOR_DATA_OFFSET } from './ggml-rpc.js'
import { RpcTunnelMetrics } from './metrics.js'
import { observeAll, RpcRequestValidator } from './request-validator.js'
import { MIN_CACHED_TENSOR_BYTES, TensorCache, tensorKey } from './tensor-cache.js'
import { SetTensorDeduplicator, TensorInventory } from './tensor-dedup.js'
import { rpcRequest } from './test-support/frames.js'

const CAP = 64 * 1024 * 1024

function concat (parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts))
}

/** A SET_TENSOR of `data` to the tensor described by `description` (rpc_tensor and offset). */
function setTensor (data: Uint8Array, description = randomBytes(SET_TENSOR_DATA_OFFSET)): Uint8Array {
  return rpcRequest(RpcCommand.SET_TENSOR, concat([description, data]))
}

/** Passes `bytes` in chunks of `size` through `push` and returns everything it let through. */
function feed (push: (chunk: Uint8Array) => Uint8Array[], bytes: Uint8Array, size = 65_536): Uint8Array {
  const out: Uint8Array[] = []
  for (let i = 0; i < bytes.length; i += size) out.push(...push(bytes.subarray(i, i + size)))
  return concat(out)
}

describe('tunnel tensor cache', () => {
  let dir: string
  let cache: TensorCache
  const writeErrors: string[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'llmesh-tensor-cache-'))
    cache = new TensorCache(dir, () => 64 * 1024 * 1024, new RpcTunnelMetrics(new Registry()), { error: (...args: unknown[]) => { writeErrors.push(args.join(' ')) } })
  })

  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  /** The worker bridge's validator for one session over `cache`. */
  const workerSession = (tensorCache: TensorCache | undefined = cache, hashAnswered = (): void => {}): RpcRequestValidator => {
    const session = tensorCache?.session()
    return new RpcRequestValidator(CAP, session === undefined ? undefined : observeAll(session.observer), session?.source, hashAnswered)
  }

  const weights = randomBytes(MIN_CACHED_TENSOR_BYTES + 4096)
  const norm = randomBytes(MIN_CACHED_TENSOR_BYTES - 1)
  const hello = rpcRequest(RpcCommand.HELLO, 24)

  it('keeps the data of a mid-size tensor that passes whole, and only that', async () => {
    const session = concat([hello, setTensor(weights), setTensor(norm), rpcRequest(RpcCommand.GRAPH_COMPUTE, 100)])
    assert.deepEqual(feed(chunk => workerSession().push(chunk), session, session.length), session, 'the first load reaches rpc-server unchanged')
    // One validator per session: feed the session in chunks through a single one.
    const validator = workerSession()
    assert.deepEqual(feed(chunk => validator.push(chunk), session, 1000), session)
    const inventory = await cache.inventory()
    assert.deepEqual(inventory, [{ key: tensorKey(weights), bytes: weights.byteLength }], 'the norm is too small to be worth a file')
    assert.equal((await stat(join(dir, tensorKey(weights)))).mode & 0o777, 0o600)
    assert.deepEqual(writeErrors, [])
  })

  it('never keeps or looks up what is set after the first graph computation: a prompt\'s hidden states', async () => {
    const hiddenState = randomBytes(MIN_CACHED_TENSOR_BYTES * 2)
    // A 6144-wide model's batch of 512 tokens: above llama.cpp's hash threshold.
    const largeHiddenState = randomBytes(LLAMA_RPC_HASH_THRESHOLD_BYTES + 4096)
    const computing = concat([hello, rpcRequest(RpcCommand.GRAPH_COMPUTE, 100), setTensor(hiddenState), setTensor(largeHiddenState), setTensor(weights)])
    const validator = workerSession()
    assert.deepEqual(feed(chunk => validator.push(chunk), computing), computing)
    const inventory = await cache.inventory()
    assert.ok(!inventory.some(tensor => tensor.key === tensorKey(hiddenState) || tensor.key === tensorKey(largeHiddenState)), 'a hidden state was written to disk')
    const dedup = new SetTensorDeduplicator(new TensorInventory(inventory))
    assert.deepEqual(feed(chunk => dedup.push(chunk), computing), computing, 'after a graph, even a cached tensor goes whole')
  })

  it('keeps nothing of a tensor whose session ended part-way through it', async () => {
    const cutOff = randomBytes(MIN_CACHED_TENSOR_BYTES * 4)
    const session = cache.session()
    const validator = new RpcRequestValidator(CAP, session.observer, session.source)
    const request = concat([hello, setTensor(cutOff)])
    feed(chunk => validator.push(chunk), request.subarray(0, request.byteLength - 1000))
    session.end()
    assert.ok(!(await cache.inventory()).some(tensor => tensor.bytes === cutOff.byteLength))
    assert.deepEqual((await readdir(dir)).filter(name => name.startsWith('.')), [], 'no spool file is left')
  })

  it('removes the spool file of a process that ended while writing it', async () => {
    // Weights half-written when the worker stopped: never cached data, and not left on disk.
    await writeFile(join(dir, '.spool-0badc0de-0'), randomBytes(1000))
    await cache.inventory()
    assert.deepEqual((await readdir(dir)).filter(name => name.startsWith('.')), [])
  })

  it('keeps tensors above llama.cpp\'s hash threshold too: rpc-server keeps none', async () => {
    const large = new Uint8Array(LLAMA_RPC_HASH_THRESHOLD_BYTES + 1).fill(7)
    const validator = workerSession()
    feed(chunk => validator.push(chunk), concat([hello, setTensor(large), rpcRequest(RpcCommand.GRAPH_COMPUTE, 100)]))
    assert.ok((await cache.inventory()).some(tensor => tensor.key === tensorKey(large)))
  })

  it('answers llama.cpp\'s SET_TENSOR_HASH for a large tensor it keeps while the weights load, and only then', async () => {
    const large = randomBytes(LLAMA_RPC_HASH_THRESHOLD_BYTES + 4096)
    const fnv = randomBytes(8)
    const hashRequest = (description: Uint8Array): Uint8Array => rpcRequest(RpcCommand.SET_TENSOR_HASH, concat([description, fnv]))
    const description = randomBytes(SET_TENSOR_DATA_OFFSET)
    let answered = 0
    // The first load: rpc-server holds nothing, so llama.cpp sends the data after the hash.
    const first = concat([hello, hashRequest(description), setTensor(large, description), rpcRequest(RpcCommand.GRAPH_COMPUTE, 100)])
    assert.deepEqual(feed(chunk => workerSession(cache, () => { answered++ }).push(chunk), first, first.length), first)
    await cache.inventory()
    assert.equal(answered, 0)
    assert.ok((await readdir(dir)).includes(`fnv-${Buffer.from(fnv).reverse().toString('hex')}`), 'the data is linked by the hash llama.cpp announced')

    // A reload, to another place in another buffer: the worker sets the data itself.
    const elsewhere = randomBytes(SET_TENSOR_DATA_OFFSET)
    const reload = workerSession(cache, () => { answered++ })
    assert.deepEqual(feed(chunk => reload.push(chunk), concat([hello, hashRequest(elsewhere)]), 100), concat([hello, setTensor(large, elsewhere)]))
    assert.equal(answered, 1, 'the client gets its answer from the worker')
    // After a graph, a SET_TENSOR_HASH is a prompt's activations: passed on, never answered.
    const computing = concat([rpcRequest(RpcCommand.GRAPH_COMPUTE, 100), hashRequest(elsewhere)])
    assert.deepEqual(feed(chunk => reload.push(chunk), computing), computing)
    assert.equal(answered, 1)
    // An unknown hash goes to rpc-server, which says it holds nothing.
    const unknown = concat([hello, rpcRequest(RpcCommand.SET_TENSOR_HASH, concat([description, randomBytes(8)]))])
    assert.deepEqual(feed(chunk => workerSession(cache, () => { answered++ }).push(chunk), unknown), unknown)
    assert.equal(answered, 1)
  })

  it('sends a cached tensor as SET_TENSOR_CACHED, which the worker expands into the very same request', async () => {
    const description = randomBytes(SET_TENSOR_DATA_OFFSET)
    const other = randomBytes(weights.byteLength) // the same size, not cached: it must go whole
    const reload = concat([hello, setTensor(weights, description), setTensor(other), setTensor(norm), rpcRequest(RpcCommand.GRAPH_COMPUTE, 100)])
    const inventory = new TensorInventory(await cache.inventory())
    // Chunks of 100 bytes split the tensor's 304-byte description over several parts.
    for (const size of [100, 4096]) {
      const dedup = new SetTensorDeduplicator(inventory)
      const crossing = feed(chunk => dedup.push(chunk), reload, size)
      assert.ok(crossing.byteLength < reload.byteLength - weights.byteLength + 1024, `${crossing.byteLength} bytes crossed for a ${reload.byteLength}-byte reload`)
      const validator = workerSession()
      assert.deepEqual(feed(chunk => validator.push(chunk), crossing, 777), reload, 'rpc-server receives exactly what llama-server sent')
    }
  })

  it('passes every byte after the first graph computation, however llama-server\'s writes split a request header', async () => {
    const reload = concat([hello, setTensor(weights), rpcRequest(RpcCommand.GRAPH_COMPUTE, 100), rpcRequest(RpcCommand.GET_TENSOR, 312), rpcRequest(RpcCommand.GRAPH_COMPUTE, 100)])
    const inventory = new TensorInventory(await cache.inventory())
    const firstGraphEnd = reload.length - (9 + 312) - (9 + 100)
    // The write that starts the graph computation ends part-way into the next request's header.
    for (const headerPart of [1, 5, 8]) {
      const cut = firstGraphEnd + headerPart
      const dedup = new SetTensorDeduplicator(inventory)
      const crossing = concat([...dedup.push(reload.subarray(0, cut)), ...dedup.push(reload.subarray(cut))])
      const validator = workerSession()
      assert.deepEqual(feed(chunk => validator.push(chunk), crossing), reload, `cut ${headerPart} bytes into a header: rpc-server receives exactly what llama-server sent`)
    }
  })

  it('closes a session whose cached tensor is gone with a typed error', async () => {
    const gone = randomBytes(MIN_CACHED_TENSOR_BYTES)
    feed(chunk => workerSession().push(chunk), concat([hello, setTensor(gone)]), Number.MAX_SAFE_INTEGER)
    const inventory = new TensorInventory(await cache.inventory())
    const crossing = feed(chunk => new SetTensorDeduplicator(inventory).push(chunk), concat([hello, setTensor(gone)]), Number.MAX_SAFE_INTEGER)
    await rm(join(dir, tensorKey(gone)))
    assert.throws(() => workerSession().push(crossing), RpcTensorCacheMissError)
  })

  it('is refused by a worker that keeps no tensor cache', async () => {
    const inventory = new TensorInventory(await cache.inventory())
    const crossing = feed(chunk => new SetTensorDeduplicator(inventory).push(chunk), concat([hello, setTensor(weights)]), Number.MAX_SAFE_INTEGER)
    assert.throws(() => new RpcRequestValidator(CAP).push(crossing), UnknownRpcCommandError)
  })

  it('stays within its budget, removing the least recently used data first', async () => {
    const small = await mkdtemp(join(tmpdir(), 'llmesh-tensor-cache-budget-'))
    try {
      const tensors = [1, 2, 3].map(() => randomBytes(MIN_CACHED_TENSOR_BYTES))
      let budget = 3 * MIN_CACHED_TENSOR_BYTES
      const budgeted = new TensorCache(small, () => budget, new RpcTunnelMetrics(new Registry()), { error: () => {} })
      const validator = workerSession(budgeted)
      feed(chunk => validator.push(chunk), concat([hello, ...tensors.map(data => setTensor(data))]))
      await budgeted.inventory()
      // Used in the order 1, 0, 2: the first-stored tensor was used since, the second was not.
      const keys = tensors.map(tensorKey)
      for (const [age, index] of [[30, 1], [20, 0], [10, 2]]) {
        const at = new Date(Date.now() - age * 1000)
        await utimes(join(small, keys[index]), at, at)
      }
      budget = 2 * MIN_CACHED_TENSOR_BYTES
      assert.deepEqual((await budgeted.inventory()).map(tensor => tensor.key), [keys[2], keys[0]])
      assert.deepEqual((await readdir(small)).sort(), [keys[0], keys[2]].sort())
    } finally {
      await rm(small, { recursive: true, force: true })
    }
  })
})
