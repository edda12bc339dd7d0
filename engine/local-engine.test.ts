import assert from 'node:assert/strict'
import { open, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { readCpuBudget } from './cpu-budget.js'
import type { FinishReason, GeneratedPiece, GenerateInput, GenerateOptions } from './engine.js'
import { EngineDisposedError } from './errors.js'
import { GgufError, GgufFileError, NotGgufError, TruncatedGgufError } from './gguf/index.js'
import { loadLocalEngine, type LocalEngine } from './local-engine.js'
import { useLocalEngine } from './test-support/local-engine-fixture.js'

const PROMPT = 'The quick brown fox jumps over the lazy dog.'

/** Runs a generation to its end and returns its pieces and finish reason. */
async function collect (engine: LocalEngine, input: GenerateInput, options: GenerateOptions): Promise<{ pieces: GeneratedPiece[], finish: FinishReason }> {
  const generator = engine.generate(input, options)
  const pieces: GeneratedPiece[] = []
  for (;;) {
    const step = await generator.next()
    if (step.done === true) return { pieces, finish: step.value }
    pieces.push(step.value)
  }
}

describe('local engine', () => {
  const local = useLocalEngine()

  it('computes with the threads the CPU budget allows', async () => {
    assert.equal(local.engine.threads, (await readCpuBudget()).threads)
  })

  it('generates exactly maxTokens tokens when end-of-generation is ignored', async () => {
    const { pieces, finish } = await collect(local.engine, PROMPT, { maxTokens: 24, ignoreEos: true })
    assert.equal(pieces.length, 24)
    assert.equal(finish, 'length')
  })

  it('repeats greedy output exactly: nothing of an earlier generation leaks into the next', async () => {
    const first = await collect(local.engine, PROMPT, { maxTokens: 16, ignoreEos: true })
    await collect(local.engine, 'Something else entirely, to fill the cache.', { maxTokens: 8, ignoreEos: true })
    const again = await collect(local.engine, PROMPT, { maxTokens: 16, ignoreEos: true })
    assert.deepEqual(again.pieces, first.pieces)
  })

  it('accepts token ids as input, with the same result as the text they encode', async () => {
    const fromText = await collect(local.engine, PROMPT, { maxTokens: 12, ignoreEos: true })
    const fromTokens = await collect(local.engine, { tokens: local.engine.tokenize(PROMPT) }, { maxTokens: 12, ignoreEos: true })
    assert.deepEqual(fromTokens.pieces, fromText.pieces)
  })

  it('decodes the generated tokens into the text of the whole sequence', async () => {
    const { pieces } = await collect(local.engine, PROMPT, { maxTokens: 32, ignoreEos: true })
    const text = pieces.map(p => p.text).join('')
    const whole = local.engine.detokenize(pieces.map(p => p.token))
    assert.ok(text.length > 0)
    // Only an incomplete character at the very end may still be held back.
    assert.ok(whole.startsWith(text))
    assert.match(whole.slice(text.length), /^\uFFFD*$/)
  })

  it('ends at a stop text and leaves it out', async () => {
    const { pieces } = await collect(local.engine, PROMPT, { maxTokens: 32, ignoreEos: true })
    const text = pieces.map(p => p.text).join('')
    const stop = pieces.slice(10, 12).map(p => p.text).join('')
    assert.ok(stop.length > 0, 'the synthetic model should produce text in the middle of its output')
    const stopped = await collect(local.engine, PROMPT, { maxTokens: 32, ignoreEos: true, stop: [stop] })
    assert.equal(stopped.finish, 'stop')
    assert.equal(stopped.pieces.map(p => p.text).join(''), text.slice(0, text.indexOf(stop)))
  })

  it('stops promptly when aborted and stays usable', async () => {
    const controller = new AbortController()
    const seen: GeneratedPiece[] = []
    await assert.rejects(async () => {
      for await (const piece of local.engine.generate(PROMPT, { maxTokens: 10_000, ignoreEos: true, signal: controller.signal })) {
        seen.push(piece)
        if (seen.length === 3) controller.abort()
      }
    }, { name: 'AbortError' })
    assert.equal(seen.length, 3, 'no token may arrive after the abort')

    await assert.rejects(collect(local.engine, PROMPT, { maxTokens: 4, signal: AbortSignal.abort() }), { name: 'AbortError' })
    const { pieces } = await collect(local.engine, PROMPT, { maxTokens: 4, ignoreEos: true })
    assert.equal(pieces.length, 4)
  })

  it('runs concurrent generations one after the other, each with its own result', async () => {
    const alone = await collect(local.engine, PROMPT, { maxTokens: 8, ignoreEos: true })
    const [a, b] = await Promise.all([
      collect(local.engine, PROMPT, { maxTokens: 8, ignoreEos: true }),
      collect(local.engine, PROMPT, { maxTokens: 8, ignoreEos: true })
    ])
    assert.deepEqual(a.pieces, alone.pieces)
    assert.deepEqual(b.pieces, alone.pieces)
  })

  it('with two slots, runs two generations at once, each in half the context, and queues a third', async () => {
    const twoSlots = await loadLocalEngine({ modelPath: local.model.path, contextSize: 1024, slots: 2 })
    try {
      assert.deepEqual([twoSlots.slots, twoSlots.contextSize], [2, 512])
      const firstPieces: number[] = []
      const ends: number[] = []
      const timed = async (): Promise<void> => {
        const generator = twoSlots.generate(PROMPT, { maxTokens: 24, ignoreEos: true })
        let pieces = 0
        while ((await generator.next()).done !== true) if (++pieces === 1) firstPieces.push(performance.now())
        assert.equal(pieces, 24)
        ends.push(performance.now())
      }
      await Promise.all([timed(), timed(), timed()])
      // With one slot each generation's first piece would come after the previous one's end.
      assert.ok(firstPieces[1] < ends[0], 'the second generation waited for the first')
      assert.ok(firstPieces[2] > ends[0], 'the third generation ran before a slot was free')
    } finally {
      await twoSlots.dispose()
    }
    await assert.rejects(loadLocalEngine({ modelPath: local.model.path, contextSize: 4, slots: 8 }), /slots must be a whole number from 1 to the context size \(4\), got 8/)
  })

  it('refuses to generate after dispose', async () => {
    const other = await loadLocalEngine({ modelPath: local.model.path, threads: 1 })
    await other.dispose()
    await assert.rejects(collect(other, PROMPT, { maxTokens: 1 }), EngineDisposedError)
  })

  it('refuses missing, non-GGUF and truncated model files with a typed error naming the file', async () => {
    const missing = join(local.model.dir, 'missing.gguf')
    await assert.rejects(loadLocalEngine({ modelPath: missing }), (err: Error) => err instanceof GgufFileError && err.message.includes(missing))

    const text = join(local.model.dir, 'notes.gguf')
    await writeFile(text, 'these are not model weights\n')
    await assert.rejects(loadLocalEngine({ modelPath: text }), (err: Error) => err instanceof NotGgufError && err.message.includes(text))

    const truncated = join(local.model.dir, 'truncated.gguf')
    const source = await open(local.model.path, 'r')
    try {
      const { size } = await source.stat()
      const half = Buffer.alloc(Math.floor(size / 2))
      await source.read(half, 0, half.length, 0)
      await writeFile(truncated, half)
    } finally {
      await source.close()
    }
    await assert.rejects(loadLocalEngine({ modelPath: truncated }), (err: Error) => err instanceof TruncatedGgufError && err instanceof GgufError)
  })
})
