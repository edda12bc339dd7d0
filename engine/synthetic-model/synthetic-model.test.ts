import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { getLlama, LlamaCompletion, LlamaLogLevel, type Llama, type LlamaModel } from 'node-llama-cpp'
import { GgmlType, readGgufInfo, writeGgufFile } from '../gguf/index.js'
import { DEFAULT_SYNTHETIC_MODEL_OPTIONS, InvalidModelOptionsError, checkSyntheticModelOptions, syntheticModelContent, type SyntheticModelOptions } from './index.js'

const tiny: SyntheticModelOptions = { layers: 2, embd: 64, ff: 128, heads: 4, kvHeads: 2, ctx: 256, type: 'f16', seed: 7 }

describe('synthetic llama models', () => {
  let dir: string

  const write = async (name: string, options: Partial<SyntheticModelOptions>): Promise<string> => {
    const path = join(dir, name)
    await writeGgufFile(path, syntheticModelContent({ ...tiny, ...options }))
    return path
  }
  const sha256 = async (path: string): Promise<string> => createHash('sha256').update(await readFile(path)).digest('hex')

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'llmesh-synthetic-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('gives byte-identical files for the same options and seed, different weights for another seed', async () => {
    const first = await sha256(await write('a.gguf', {}))
    const second = await sha256(await write('b.gguf', {}))
    const otherSeed = await sha256(await write('c.gguf', { seed: 8 }))
    assert.equal(first, second)
    assert.notEqual(first, otherSeed)
  })

  it('draws each tensor from the seed and its name only, whatever else the model holds', async () => {
    const tensorBytes = async (path: string, name: string): Promise<Buffer> => {
      const info = await readGgufInfo(path)
      const tensor = info.tensors.find(t => t.name === name)
      assert.ok(tensor != null, name)
      const start = info.dataOffset + tensor.offset
      return (await readFile(path)).subarray(start, start + tensor.byteSize)
    }
    const small = await write('one-layer.gguf', { layers: 1 })
    const large = await write('three-layers.gguf', { layers: 3 })
    assert.ok((await tensorBytes(small, 'token_embd.weight')).equals(await tensorBytes(large, 'token_embd.weight')))
    assert.ok((await tensorBytes(small, 'blk.0.ffn_up.weight')).equals(await tensorBytes(large, 'blk.0.ffn_up.weight')))
    assert.ok(!(await tensorBytes(large, 'blk.0.ffn_up.weight')).equals(await tensorBytes(large, 'blk.1.ffn_up.weight')))
  })

  it('describes the options in llama metadata and tensor shapes', async () => {
    const info = await readGgufInfo(await write('q8.gguf', { type: 'q8_0', layers: 3 }))
    const value = (key: string): unknown => info.metadata.get(key)?.value
    assert.equal(value('general.architecture'), 'llama')
    assert.equal(value('general.file_type'), 7)
    assert.equal(value('llama.block_count'), 3)
    assert.equal(value('llama.embedding_length'), 64)
    assert.equal(value('llama.feed_forward_length'), 128)
    assert.equal(value('llama.attention.head_count'), 4)
    assert.equal(value('llama.attention.head_count_kv'), 2)
    assert.equal(value('llama.context_length'), 256)
    assert.equal(value('llama.rope.dimension_count'), 16)
    const vocab = (value('tokenizer.ggml.tokens') as string[]).length
    assert.equal(value('llama.vocab_size'), vocab)
    assert.equal(info.tensors.length, 3 + 9 * 3)
    const byName = new Map(info.tensors.map(t => [t.name, t]))
    assert.deepEqual(byName.get('token_embd.weight')?.dims, [64, vocab])
    assert.deepEqual(byName.get('blk.2.attn_k.weight')?.dims, [64, 32])
    assert.deepEqual(byName.get('blk.2.ffn_down.weight')?.dims, [128, 64])
    for (const tensor of info.tensors) {
      assert.equal(tensor.type, tensor.dims.length === 1 ? GgmlType.F32 : GgmlType.Q8_0, tensor.name)
    }
  })

  it('refuses options llama.cpp could not load', () => {
    const bad: Array<Partial<SyntheticModelOptions>> = [
      { heads: 3 }, // does not divide 64
      { heads: 64 }, // head size 1 is odd
      { kvHeads: 3 }, // does not divide 4 heads
      { type: 'q8_0', ff: 100 },
      { type: 'q4_0' as SyntheticModelOptions['type'] },
      { layers: 0 },
      { layers: 513 },
      { embd: 2.5 },
      { seed: -1 },
      { seed: 2 ** 32 }
    ]
    for (const options of bad) {
      assert.throws(() => checkSyntheticModelOptions({ ...tiny, ...options }), InvalidModelOptionsError, JSON.stringify(options))
    }
    assert.doesNotThrow(() => checkSyntheticModelOptions(DEFAULT_SYNTHETIC_MODEL_OPTIONS))
  })

  describe('in node-llama-cpp', () => {
    let llama: Llama
    let model: LlamaModel

    before(async () => {
      llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error })
      model = await llama.loadModel({ modelPath: await write('engine.gguf', {}) })
    })
    after(async () => {
      await model?.dispose()
      await llama?.dispose()
    })

    it('tokenizes ASCII text and detokenizes it back unchanged', () => {
      const texts = [
        'Hello, world!',
        'The mesh turns the machines on a network into one server.',
        'a , b ? c ! d . e',
        "We're fine; they've said it's done, I'd think.",
        '  leading and   repeated spaces, trailing too  ',
        'line one\nline two\r\n\n\ttabbed\tline',
        'digits 0123456789 and 3.14159 and -42',
        'symbols ~!@#$%^&*()_+{}|:"<>?`-=[]\\;\',./',
        '<|im_start|> is plain text here'
      ]
      for (const text of texts) {
        const tokens = model.tokenize(text)
        assert.equal(model.detokenize(tokens), text)
      }
      assert.equal(model.tokenize(' the').length, 1, 'common words are merged into one token')
    })

    it('generates varied, valid text with greedy sampling', async () => {
      const context = await model.createContext({ contextSize: 256, threads: 1 })
      try {
        const completion = new LlamaCompletion({ contextSequence: context.getSequence() })
        const text = await completion.generateCompletion('Hello, how are', { maxTokens: 24, temperature: 0 })
        assert.ok(new Set(model.tokenize(text)).size >= 6, `greedy output should not repeat one token: ${JSON.stringify(text)}`)
        // Invalid UTF-8 in the output makes llama-server fail the whole request.
        assert.doesNotMatch(text, /\uFFFD/, 'output is valid UTF-8')
      } finally {
        await context.dispose()
      }
    })
  })
})
