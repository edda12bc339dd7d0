import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { Key } from 'interface-datastore'
import { runMesh } from '../tools/test-support/run-mesh.js'
import { AuditLedger, type AuditFacts } from './audit-ledger.js'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { dataDir, ensureDataDir, openDatastore, writeClusterConfig, type DataDir } from './data-dir.js'

const FACTS: AuditFacts = { requestId: 'req-a', apiKeyId: 'default', model: 'test-model', promptTokens: 12, completionTokens: 34, durationMs: 56.4, status: 200 }

async function withLedger<T> (dir: DataDir, use: (ledger: AuditLedger, store: Awaited<ReturnType<typeof openDatastore>>) => Promise<T>): Promise<T> {
  const store = await openDatastore(dir)
  try {
    return await use(new AuditLedger(store), store)
  } finally {
    await store.close()
  }
}

describe('audit ledger', () => {
  let home: string
  let dir: DataDir

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'llmesh-audit-'))
    dir = dataDir(home)
    await ensureDataDir(dir)
    // `mesh audit` needs a cluster's data dir; only cluster.json is read.
    await writeClusterConfig(dir, { clusterId: 'audit-test', caPublicKey: Buffer.from(publicKeyToProtobuf((await generateKeyPair('Ed25519')).publicKey)).toString('base64'), coordinatorAddrs: [] })
  })
  after(async () => { await rm(home, { recursive: true, force: true }) })

  it('chains records, stores no key id in the clear, and shows the latest with tail', async () => {
    await withLedger(dir, async ledger => {
      for (let i = 0; i < 5; i++) await ledger.append({ ...FACTS, requestId: `req-${i}`, completionTokens: i })
      const tail = await ledger.tail(3)
      assert.deepEqual(tail.map(r => r.seq), [3, 4, 5])
      assert.deepEqual(tail.map(r => r.requestId), ['req-2', 'req-3', 'req-4'])
      assert.equal(tail[1].prev, tail[0].hash)
      assert.notEqual(tail[0].keyIdHash, 'default')
      assert.match(tail[0].keyIdHash ?? '', /^[0-9a-f]{16}$/)
      assert.equal(tail[0].durationMs, 56)
      assert.deepEqual(await ledger.verify(), { ok: true, records: 5, badSeq: null, reason: null })
    })
  })

  it('concurrent appends still form one chain', async () => {
    await withLedger(dir, async ledger => {
      await Promise.all(Array.from({ length: 20 }, async (_, i) => await ledger.append({ ...FACTS, requestId: `burst-${i}` })))
      const result = await ledger.verify()
      assert.equal(result.ok, true, String(result.reason))
      assert.equal(result.records, 25)
    })
  })

  it('mesh audit verify names the record whose stored bytes were changed, and exits 1', async () => {
    await withLedger(dir, async (_ledger, store) => {
      const key = new Key(`/llmesh/audit/records/${String(7).padStart(16, '0')}`)
      const bytes = await store.get(key)
      const text = new TextDecoder().decode(bytes)
      // One byte of the completion token count: still valid JSON, so only the hash can tell.
      const at = text.indexOf('"completionTokens":') + '"completionTokens":'.length
      const flipped = Uint8Array.from(bytes)
      flipped[at] = flipped[at] === 0x39 ? 0x38 : flipped[at] + 1
      await store.put(key, flipped)
    })
    const result = await runMesh(['audit', 'verify'], { env: { LLMESH_HOME: home } })
    assert.equal(result.code, 1, result.stdout + result.stderr)
    assert.match(result.stderr, /^mesh: the audit ledger .* does not verify at record 7: record 7 was altered/)
    const json = await runMesh(['audit', 'verify', '--json'], { env: { LLMESH_HOME: home } })
    assert.equal(json.code, 1)
    assert.equal((JSON.parse(json.stdout) as { badSeq: number }).badSeq, 7)
  })

  it('mesh audit refuses a data dir that holds no cluster', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'llmesh-audit-empty-'))
    try {
      const result = await runMesh(['audit', 'tail'], { env: { LLMESH_HOME: empty } })
      assert.equal(result.code, 1)
      assert.match(result.stderr, /^mesh: .* holds no cluster/)
    } finally {
      await rm(empty, { recursive: true, force: true })
    }
  })

  it('mesh audit tail --json shows the records without a running node', async () => {
    const result = await runMesh(['audit', 'tail', '-n', '2', '--json'], { env: { LLMESH_HOME: home } })
    assert.equal(result.code, 0, result.stderr)
    const records = JSON.parse(result.stdout) as Array<{ seq: number }>
    assert.deepEqual(records.map(r => r.seq), [24, 25])
    const human = await runMesh(['audit', 'tail'], { env: { LLMESH_HOME: home } })
    assert.equal(human.code, 0, human.stderr)
    assert.match(human.stdout, /^SEQ +TIME \(UTC\) +REQUEST/)
    for (const line of human.stdout.trimEnd().split('\n')) assert.ok(line.length <= 100, line)
  })
})

describe('audit ledger after SIGKILL', () => {
  let home: string

  before(async () => { home = await mkdtemp(join(tmpdir(), 'llmesh-audit-kill-')) })
  after(async () => { await rm(home, { recursive: true, force: true }) })

  it('a process killed while appending as fast as it can leaves a ledger that verifies', async () => {
    const dir = dataDir(home)
    await ensureDataDir(dir)
    const moduleUrl = new URL('./audit-ledger.js', import.meta.url).href
    const dataDirUrl = new URL('./data-dir.js', import.meta.url).href
    const script = `
      const { AuditLedger } = await import(${JSON.stringify(moduleUrl)})
      const { dataDir, openDatastore } = await import(${JSON.stringify(dataDirUrl)})
      const ledger = new AuditLedger(await openDatastore(dataDir(${JSON.stringify(home)})))
      for (let i = 0; ; i++) {
        await ledger.append({ requestId: 'kill-' + i, apiKeyId: 'k', model: 'm', promptTokens: i, completionTokens: i, durationMs: 1, status: 200 })
        if (i === 50) process.stdout.write('appending\\n')
      }`
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'], cwd: fileURLToPath(new URL('.', import.meta.url)) })
    const exited = new Promise(resolve => child.once('exit', resolve))
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.once('data', () => { resolve() })
        child.once('exit', () => { reject(new Error('the appending process ended before it was killed')) })
      })
      // Appends keep running for a moment, so the kill lands in the middle of one.
      await delay(150)
    } finally {
      child.kill('SIGKILL')
      await exited
    }
    await withLedger(dir, async ledger => {
      const result = await ledger.verify()
      assert.equal(result.ok, true, String(result.reason))
      assert.ok(result.records > 50, `only ${result.records} records`)
      // And the chain goes on from where it stopped.
      await ledger.append(FACTS)
      assert.equal((await ledger.verify()).records, result.records + 1)
    })
  })
})
