import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { it } from 'node:test'
import { bundledLlamaCppSource } from '../engine/llama-cpp/source.js'
import { runMesh } from './test-support/run-mesh.js'

it('mesh --version prints llmesh\'s version and the llama.cpp tag it builds', async () => {
  const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  for (const flag of ['--version', '-V']) {
    const result = await runMesh([flag])
    assert.equal(result.code, 0, result.stderr)
    assert.equal(result.stdout, `llmesh ${version} (llama.cpp ${bundledLlamaCppSource().tag})\n`)
  }
})
