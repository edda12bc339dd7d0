import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { readGgufInfo } from '../../engine/gguf/index.js'
import { MESH_BIN, runMesh } from '../test-support/run-mesh.js'

// About 300 MB in f16: big enough that holding a tensor or the file in memory would show.
const LARGE = ['--layers', '12', '--embd', '1024', '--ff', '2816', '--heads', '16', '--kv-heads', '16']

describe('mesh make-test-model', () => {
  let dir: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'llmesh-make-test-model-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('writes the model and reports it as JSON', async () => {
    const out = join(dir, 'small.gguf')
    const result = await runMesh(['make-test-model', '--out', out, '--layers', '2', '--type', 'q8_0', '--kv-heads', '2', '--seed', '3', '--json'])
    assert.equal(result.code, 0, result.stderr)
    const { path, bytes, seconds, vocabSize, ...parameters } = JSON.parse(result.stdout) as Record<string, unknown>
    assert.equal(path, out)
    assert.equal(bytes, (await stat(out)).size)
    assert.equal(typeof seconds, 'number')
    assert.deepEqual(parameters, { layers: 2, embd: 256, ff: 512, heads: 4, kvHeads: 2, ctx: 512, type: 'q8_0', seed: 3, byteTokens: 'ascii', chatTemplate: 'chatml' })
    const info = await readGgufInfo(out)
    assert.equal(info.metadata.get('llama.block_count')?.value, 2)
    assert.equal((info.metadata.get('tokenizer.ggml.tokens')?.value as string[]).length, vocabSize)
  })

  it('ends bad options with one line and a non-zero exit, leaving no file behind', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--heads', '5'], /--heads 5 does not divide --embd 256/],
      [['--type', 'q4_0'], /'q4_0' is invalid/],
      [['--type', 'q8_0', '--embd', '80', '--heads', '4'], /q8_0 needs --embd and --ff to be multiples of 32/],
      [['--layers', 'many'], /--layers/]
    ]
    // Each case has its own output path, so the runs can overlap.
    await Promise.all(cases.map(async ([args, message], index) => {
      const out = join(dir, `bad-${index}.gguf`)
      const result = await runMesh(['make-test-model', '--out', out, ...args])
      assert.notEqual(result.code, 0, args.join(' '))
      assert.match(result.stderr, message)
      assert.equal(result.stderr.trimEnd().split('\n').length, 1, `one line for ${args.join(' ')}: ${result.stderr}`)
      assert.equal(result.stdout, '')
    }))
    assert.ok(!(await readdir(dir)).some(name => name.startsWith('bad-')), 'no model or temporary file is left')
  })

  it('streams a large model to disk: memory does not grow with the model', async () => {
    const reporter = join(dir, 'report-rss.mjs')
    await writeFile(reporter, "process.on('exit', () => { process.stderr.write(`maxRSS ${process.resourceUsage().maxRSS * 1024}\\n`) })\n")
    const peakMemory = async (out: string, args: string[]): Promise<number> => {
      const result = await runMesh(['make-test-model', '--out', out, ...args], { env: { NODE_OPTIONS: `--import=${reporter}` } })
      assert.equal(result.code, 0, result.stderr)
      return Number(/maxRSS (\d+)/.exec(result.stderr)?.[1])
    }
    const small = await peakMemory(join(dir, 'small-for-rss.gguf'), [])
    const out = join(dir, 'large.gguf')
    const large = await peakMemory(out, LARGE)
    const size = (await stat(out)).size
    assert.ok(size > 300e6, `model is ${size} bytes`)
    // The CLI itself needs about 110 MB; writing may add buffers, not the model.
    assert.ok(large < small + 64e6, `peak memory ${Math.round(large / 1e6)} MB for a ${Math.round(size / 1e6)} MB model, ${Math.round(small / 1e6)} MB for a small one`)
    await rm(out)
  })

  it('removes the partial file when interrupted', async () => {
    const out = join(dir, 'interrupted.gguf')
    const child = spawn(process.execPath, [MESH_BIN, 'make-test-model', '--out', out, ...LARGE], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
    const exited = new Promise<number | null>(resolve => child.once('close', resolve))
    try {
      const temp = `${out}.tmp-${child.pid}`
      while (!(await readdir(dir)).includes(temp.slice(dir.length + 1))) await sleep(10)
      child.kill('SIGINT')
      assert.notEqual(await exited, 0)
      assert.match(stderr, /^mesh: .*cancelled/)
      assert.ok(!(await readdir(dir)).some(name => name.startsWith('interrupted.gguf')), 'no model and no temporary file')
    } finally {
      child.kill('SIGKILL')
    }
  })
})
