import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readModelFacts } from './model-facts.js'
import { ModelFileError } from './errors.js'
import { GgufValueType, NotGgufError, type GgufValue, u32, writeGgufFile } from './gguf/index.js'
import { syntheticModelContent } from './synthetic-model/index.js'

const options = { layers: 3, embd: 64, ff: 128, heads: 4, kvHeads: 2, ctx: 256, type: 'f16' as const, seed: 7 }

describe('readModelFacts', () => {
  let dir: string
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'llmesh-model-facts-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('reads layer sizes, embedding, head and KV values per token from a synthetic model', async () => {
    const path = join(dir, 'model.gguf')
    const content = syntheticModelContent(options)
    await writeGgufFile(path, content)
    const facts = await readModelFacts(path)

    const { embd, ff, heads, kvHeads } = options
    const kvDim = (embd / heads) * kvHeads
    const vocab = content.tensors[0].dims[1]
    // f16 matrices (2 bytes per value): q and output embd x embd, k and v embd x kvDim, three ffn embd x ff; two f32 norms.
    const layerBytes = 2 * (2 * embd * embd + 2 * embd * kvDim + 3 * embd * ff) + 2 * 4 * embd
    assert.equal(facts.layerCount, 3)
    assert.deepEqual(facts.layerWeightBytes, [layerBytes, layerBytes, layerBytes])
    // The largest tensor of a layer is one of the three embd x ff feed-forward matrices.
    assert.deepEqual(facts.layerLargestTensorBytes, [2 * embd * ff, 2 * embd * ff, 2 * embd * ff])
    assert.equal(facts.embeddingBytes, 2 * embd * vocab)
    assert.equal(facts.outputHeadBytes, 2 * embd * vocab + 4 * embd)
    assert.equal(facts.tiedEmbeddings, false)
    assert.deepEqual(facts.outsideLayerTensors, ['token_embd.weight', 'output_norm.weight', 'output.weight'])
    // K and V: kvHeads heads of embd / heads values each.
    assert.deepEqual(facts.kvValuesPerTokenPerLayer, [2 * kvDim, 2 * kvDim, 2 * kvDim])
    assert.equal(facts.embeddingLength, embd)
    assert.equal(facts.vocabSize, vocab)
    assert.equal(facts.largestTensorBytes, 2 * embd * vocab)
  })

  it('handles tied embeddings and per-layer KV head counts', async () => {
    const path = join(dir, 'tied.gguf')
    const content = syntheticModelContent(options)
    const metadata = new Map<string, GgufValue>(content.metadata)
    metadata.set('llama.attention.head_count_kv', { type: GgufValueType.ARRAY, itemType: GgufValueType.UINT32, value: [1, 2, 4] })
    metadata.set('llama.attention.key_length', u32(32))
    const tensors = content.tensors.filter(tensor => tensor.name !== 'output.weight')
    await writeGgufFile(path, { metadata, tensors })
    const facts = await readModelFacts(path)
    assert.equal(facts.tiedEmbeddings, true)
    assert.equal(facts.outputHeadBytes, 4 * options.embd)
    assert.deepEqual(facts.outsideLayerTensors, ['token_embd.weight', 'output_norm.weight'])
    // value_length defaults to embd / heads = 16, key_length is 32.
    assert.deepEqual(facts.kvValuesPerTokenPerLayer, [1 * 48, 2 * 48, 4 * 48])
  })

  it('refuses a GGUF file that lacks what a layer split needs', async () => {
    const path = join(dir, 'no-blocks.gguf')
    const content = syntheticModelContent(options)
    const metadata = new Map(content.metadata)
    metadata.delete('llama.block_count')
    await writeGgufFile(path, { metadata, tensors: content.tensors })
    await assert.rejects(readModelFacts(path), (err: unknown) => err instanceof ModelFileError && /llama\.block_count/.test(err.message))

    const noEmbedding = join(dir, 'no-embedding.gguf')
    await writeGgufFile(noEmbedding, { metadata: content.metadata, tensors: content.tensors.filter(tensor => tensor.name !== 'token_embd.weight') })
    await assert.rejects(readModelFacts(noEmbedding), /no token_embd\.weight tensor/)
  })

  it('passes on the GGUF reader\'s error for a file that is not GGUF', async () => {
    const path = join(dir, 'not.gguf')
    await writeFile(path, 'not a model')
    await assert.rejects(readModelFacts(path), NotGgufError)
  })
})
