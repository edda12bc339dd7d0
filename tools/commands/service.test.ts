import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { runMesh } from '../test-support/run-mesh.js'

/**
 * systemd-analyze (Debian's `systemd` package) checks a unit without a running systemd. It is
 * installed here when missing and this test runs as root; otherwise the test says what to install.
 */
function ensureSystemdAnalyze (): void {
  if (spawnSync('systemd-analyze', ['--version']).status === 0) return
  if (process.getuid?.() !== 0) assert.fail('systemd-analyze is missing: install Debian\'s systemd package (apt-get install -y systemd) to run this test')
  const installed = spawnSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd'], { encoding: 'utf8', timeout: 600_000 })
  assert.equal(installed.status, 0, `apt-get install systemd failed: ${installed.stderr}`)
}

describe('mesh service', () => {
  let dir: string

  before(async () => {
    ensureSystemdAnalyze()
    dir = await mkdtemp(join(tmpdir(), 'llmesh-service-'))
  })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  for (const [role, flags] of [['coordinator', ['--model', 'models/m.gguf', '--api-host', '0.0.0.0', '--tls', 'auto', '--mlock']], ['worker', ['--peer', '10.1.2.3:9090']]] as const) {
    it(`writes a ${role} unit that systemd-analyze verify accepts without a warning, hardened and restarting on failure`, async () => {
      const result = await runMesh(['service', 'install', '--role', role, '--scope', 'system', '--print', ...flags])
      assert.equal(result.code, 0, result.stderr)
      const unit = result.stdout
      const path = join(dir, `llmesh-${role}.service`)
      await writeFile(path, unit)
      const verify = spawnSync('systemd-analyze', ['verify', '--man=no', path], { encoding: 'utf8' })
      assert.equal(verify.status, 0, verify.stderr)
      // verify exits 0 on settings it ignores (misspelt or invalid): it must have nothing to say.
      assert.equal(verify.stderr, '')
      for (const line of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'PrivateTmp=yes', 'StateDirectory=llmesh', 'Environment=LLMESH_HOME=%S/llmesh', 'Restart=on-failure', 'WantedBy=multi-user.target']) {
        assert.ok(unit.split('\n').includes(line), `the unit lacks ${line}:\n${unit}`)
      }
      const execStart = unit.split('\n').find(line => line.startsWith('ExecStart='))
      assert.ok(execStart?.startsWith(`ExecStart=${process.execPath} `) === true && execStart.includes(`/mesh.cjs start --role ${role} `), execStart)
      if (role === 'coordinator') {
        // The unit runs from /, so a relative model path is made absolute.
        assert.ok(execStart?.includes(` --model ${join(process.cwd(), 'models/m.gguf')} `), execStart)
        assert.ok(unit.includes('AmbientCapabilities=CAP_IPC_LOCK\n'), '--mlock gets the capability to lock memory')
      } else {
        assert.ok(unit.includes('CapabilityBoundingSet=\n'), 'a node without --mlock keeps no capability')
      }
    })
  }

  it('writes a user unit wanted by the user\'s default target', async () => {
    const result = await runMesh(['service', 'install', '--role', 'worker', '--scope', 'user', '--print'])
    assert.equal(result.code, 0, result.stderr)
    assert.ok(result.stdout.includes('\nWantedBy=default.target\n'))
    assert.ok(!result.stdout.includes('\nUser='))
  })

  it('refuses a flag that mesh start does not know', async () => {
    const result = await runMesh(['service', 'install', '--role', 'worker', '--print', '--modle', 'm.gguf'])
    assert.notEqual(result.code, 0)
    assert.match(result.stderr, /not a flag of mesh start: --modle/)
  })

  it('without a running systemd says so in one line and prints the mesh start command instead', async t => {
    if (existsSync('/run/systemd/system')) return t.skip('systemd runs on this machine: installing would start a real service')
    const result = await runMesh(['service', 'install', '--role', 'worker', '--peer', '10.1.2.3:9090'])
    assert.equal(result.code, 1)
    assert.equal(result.stderr.trim().split('\n').length, 1)
    assert.match(result.stderr, /^systemd is not running on this machine/)
    assert.equal(result.stdout, 'mesh start --role worker --peer 10.1.2.3:9090\n')
    assert.equal(existsSync('/etc/systemd/system/llmesh-worker.service'), false)
  })
})
