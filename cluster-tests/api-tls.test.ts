// A real `mesh start --tls auto` coordinator: its API answers over HTTPS to clients that trust the
// certificate `mesh ca-cert` prints (Node's https, the `openai` client through
// NODE_EXTRA_CA_CERTS, curl --cacert, as the README shows), and to no client that does not.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, type ExecFileException } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { get } from 'node:https'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { freePort } from '../engine/free-port.js'
import { apiCaPaths } from '../node/api-certificate.js'
import { dataDir } from '../node/data-dir.js'
import { loopbackListen, meshOk, TestCluster, waitFor } from './mesh-harness.js'

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** Runs a program and resolves with its exit code and output (never rejects on a non-zero exit). */
async function run (file: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise(resolve => {
    execFile(file, args, { cwd: REPO_ROOT, env: { ...process.env, ...env }, timeout: 60_000 }, (err: ExecFileException | null, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr })
    })
  })
}

/** GET over HTTPS trusting only `ca`. */
async function httpsStatus (url: string, ca: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    get(url, { ca }, response => { response.resume(); resolve(response.statusCode ?? 0) }).on('error', reject)
  })
}

// What a user's script does with the `openai` package once the CA is trusted through the environment.
const OPENAI_SCRIPT = `
import OpenAI from 'openai'
const client = new OpenAI({ apiKey: process.env.KEY, baseURL: process.env.BASE_URL, maxRetries: 0 })
const reply = await client.chat.completions.create({ model: 'model', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4, temperature: 0 })
process.stdout.write(JSON.stringify(reply))
`

describe('the API of `mesh start --tls auto`', () => {
  const cluster = new TestCluster()
  let model: TestModel
  let home: string
  let base: string
  let apiKey: string
  let caFile: string
  let ca: string

  before(async () => {
    model = await writeTestModel()
    home = await cluster.home('tls')
    await meshOk(home, ['init'])
    apiKey = (await readFile(dataDir(home).apiKey, 'utf8')).trim()
    const port = await freePort()
    base = `https://127.0.0.1:${port}`
    const coordinator = cluster.start(home, ['--role', 'coordinator', '--listen', loopbackListen('tcp'), '--no-mdns', '--model', model.path, '--engine', 'local', '--api-port', String(port), '--tls', 'auto'])
    await coordinator.waitForLine(/API listening on https:\/\/127\.0\.0\.1:/, 60_000)
    ca = await meshOk(home, ['ca-cert'])
    caFile = join(home, 'client-ca.pem')
    await writeFile(caFile, ca)
    await waitFor('the engine to be ready', async () => await httpsStatus(`${base}/health`, ca) === 200 ? true : undefined, 120_000)
  })

  after(async () => {
    await cluster.cleanup()
    await model?.remove()
  })

  it('mesh ca-cert prints the CA that mesh init made', async () => {
    assert.match(ca, /^-----BEGIN CERTIFICATE-----\n/)
    assert.equal(ca, await readFile(apiCaPaths(dataDir(home)).cert, 'utf8'))
  })

  it('answers the openai client that trusts the CA through NODE_EXTRA_CA_CERTS', async () => {
    const result = await run(process.execPath, ['--input-type=module', '-e', OPENAI_SCRIPT], { NODE_EXTRA_CA_CERTS: caFile, KEY: apiKey, BASE_URL: `${base}/v1` })
    assert.equal(result.code, 0, result.stderr)
    const reply = JSON.parse(result.stdout) as { object: string, choices: Array<{ message: { role: string } }> }
    assert.equal(reply.object, 'chat.completion')
    assert.equal(reply.choices[0].message.role, 'assistant')
  })

  it('answers curl --cacert and refuses curl without it', async () => {
    const trusted = await run('curl', ['-sS', '--fail', '--cacert', caFile, '-H', `Authorization: Bearer ${apiKey}`, `${base}/v1/models`])
    assert.equal(trusted.code, 0, trusted.stderr)
    assert.equal((JSON.parse(trusted.stdout) as { object: string }).object, 'list')
    const untrusted = await run('curl', ['-sS', `${base}/v1/models`])
    assert.equal(untrusted.code, 60, 'curl exits 60 when it cannot verify the server certificate')
  })

  it('is refused by a client that trusts only the public CAs', async () => {
    await assert.rejects(fetch(`${base}/health`), (err: Error) => (err.cause as { code?: string } | undefined)?.code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE')
  })
})
