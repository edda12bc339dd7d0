import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import lockfile from 'proper-lockfile'
import { buildDirFor, findLlamaCppTools, type LlamaCppTools } from '../../engine/llama-cpp/tools.js'
import { LlamaCppToolsMissingError } from '../../engine/llama-cpp/errors.js'
import { MANIFEST_FILE, type BuildManifest } from '../../engine/llama-cpp/cache.js'
import { cmakeFlags } from '../../engine/llama-cpp/build-options.js'
import { MESH_BIN, runMesh } from '../test-support/run-mesh.js'

// The test command runs `mesh setup` before the tests, so the default cache holds a build.
describe('mesh setup', () => {
  let emptyCache: string
  let realTools: LlamaCppTools

  before(async () => {
    emptyCache = await mkdtemp(join(tmpdir(), 'llmesh-cache-'))
    realTools = await findLlamaCppTools()
  })
  after(async () => {
    await rm(emptyCache, { recursive: true, force: true })
  })

  it('finds the cached build and prints the paths as JSON', async () => {
    const result = await runMesh(['setup', '--print'])
    assert.equal(result.code, 0, result.stderr)
    const printed = JSON.parse(result.stdout) as Record<string, unknown>
    assert.deepEqual(Object.keys(printed).sort(), ['flags', 'llamaCppTag', 'llamaServer', 'rpcServer'])
    assert.equal(printed.llamaServer, realTools.llamaServer)
    assert.equal(printed.rpcServer, realTools.rpcServer)
    assert.ok((printed.flags as string[]).includes('-DGGML_RPC=ON'))
    assert.ok((printed.flags as string[]).includes('-DLLAMA_CURL=OFF'))
    assert.doesNotMatch(result.stderr, /compiling/, 'a cached build must not be compiled again')
  })

  it('says which tools are missing and how to get them', async () => {
    process.env.LLMESH_CACHE = emptyCache
    try {
      await assert.rejects(findLlamaCppTools(), (err: Error) => {
        assert.ok(err instanceof LlamaCppToolsMissingError)
        assert.match(err.message, /run "mesh setup"/)
        return true
      })
    } finally {
      delete process.env.LLMESH_CACHE
    }
  })

  it('names the missing build tools in one line and creates nothing', async () => {
    const result = await runMesh(['setup', '--gpu', 'none'], { env: { PATH: '/nonexistent', CXX: undefined, LLMESH_CACHE: emptyCache } })
    assert.equal(result.code, 1)
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr)
    assert.match(result.stderr, /needs cmake and a C\+\+ compiler .* and git.*install/)
    assert.deepEqual(await readdir(emptyCache), [])
  })

  it('waits for a concurrent setup of the same build and reuses its result', async () => {
    const cache = await mkdtemp(join(tmpdir(), 'llmesh-cache-'))
    process.env.LLMESH_CACHE = cache
    const buildDir = buildDirFor('none')
    delete process.env.LLMESH_CACHE
    await mkdir(dirname(buildDir), { recursive: true })
    // Stand in for another `mesh setup` that holds the lock while it builds.
    const release = await lockfile.lock(buildDir, { realpath: false, stale: 60_000, lockfilePath: `${buildDir}.lock` })
    const child = spawn(process.execPath, [MESH_BIN, 'setup', '--gpu', 'none', '--print'], { env: { ...process.env, LLMESH_CACHE: cache } })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
    const waiting = new Promise<void>(resolve => {
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk
        if (stderr.includes('waiting for another mesh setup')) resolve()
      })
    })
    const exited = new Promise<number | null>(resolve => child.once('close', resolve))
    try {
      await waiting
      // The other setup finishes: it installs its binaries and manifest, then lets go of the lock.
      await mkdir(join(buildDir, 'bin'), { recursive: true })
      const manifest: BuildManifest = {
        llamaCppTag: realTools.llamaCppTag,
        gpu: 'none',
        flags: cmakeFlags('none'),
        rpcServer: join(buildDir, 'bin', 'ggml-rpc-server'),
        llamaServer: join(buildDir, 'bin', 'llama-server'),
        builtAt: new Date().toISOString(),
        buildSeconds: 1
      }
      await copyFile(realTools.rpcServer, manifest.rpcServer)
      await copyFile(realTools.llamaServer, manifest.llamaServer)
      await writeFile(join(buildDir, MANIFEST_FILE), JSON.stringify(manifest))
      await release()

      assert.equal(await exited, 0, stderr)
      assert.doesNotMatch(stderr, /compiling/)
      const printed = JSON.parse(stdout) as LlamaCppTools
      assert.equal(printed.llamaServer, manifest.llamaServer)
      assert.equal(printed.rpcServer, manifest.rpcServer)
    } finally {
      child.kill('SIGKILL')
      await rm(cache, { recursive: true, force: true })
    }
  })
})
