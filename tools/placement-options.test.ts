import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { placementArgs } from './placement-options.js'
import { runMesh } from './test-support/run-mesh.js'

// mesh start and mesh up take the same layout options with the same checks, and refuse a bad
// combination as a usage error before any node starts.
describe('--placement and --replicas', () => {
  let home: string

  before(async () => { home = await mkdtemp(join(tmpdir(), 'llmesh-placement-options-')) })
  after(async () => { await rm(home, { recursive: true, force: true }) })

  for (const command of [['up'], ['start', '--role', 'coordinator']]) {
    it(`mesh ${command[0]} refuses a combination the layout cannot serve, and an unknown placement`, async () => {
      const both = await runMesh([...command, '--placement', 'pipeline', '--replicas', '2'], { env: { LLMESH_HOME: home } })
      assert.equal(both.code, 1)
      assert.match(both.stderr, /--placement pipeline serves one group, but --replicas asks for 2; leave one of them out/)
      const unknown = await runMesh([...command, '--placement', 'spread'], { env: { LLMESH_HOME: home } })
      assert.equal(unknown.code, 1)
      assert.match(unknown.stderr, /option '--placement <layout>' argument 'spread' is invalid\. Allowed choices are auto, pipeline, replicas/)
      const zero = await runMesh([...command, '--replicas', '0'], { env: { LLMESH_HOME: home } })
      assert.equal(zero.code, 1)
      assert.match(zero.stderr, /expected a whole number of at least 1, got "0"/)
      assert.deepEqual(await readdir(home), [], 'nothing started: no data dir was made')
    })
  }

  it('passes the choice on to the coordinator mesh up starts', () => {
    assert.deepEqual(placementArgs({ placement: 'replicas', replicas: 3 }), ['--placement', 'replicas', '--replicas', '3'])
    assert.deepEqual(placementArgs({ placement: 'auto' }), ['--placement', 'auto'])
  })
})
