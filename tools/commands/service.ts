import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { homedir, userInfo } from 'node:os'
import { join, resolve } from 'node:path'
import { Command, InvalidArgumentError, Option } from 'commander'
import { llmeshCacheDir } from '../../engine/llama-cpp/cache.js'
import { MESH_BIN } from '../mesh-entry.js'
import { renderUnit, unitName, type ServiceScope } from '../service/systemd-unit.js'
import { startCommand } from './start.js'

type Role = 'coordinator' | 'worker'

interface ServiceOptions {
  role: Role
  scope: ServiceScope
  print?: boolean
}

// Flags of `mesh start` whose value is a file: the unit runs elsewhere than the shell that installs it.
const PATH_FLAGS = new Set(['--model', '--tls-cert', '--tls-key'])

/** `mesh start` flags as given, checked by `mesh start`'s own parser, with file paths made absolute. */
function startFlags (role: Role, flags: readonly string[]): string[] {
  const start = startCommand().exitOverride().configureOutput({ writeErr: () => {} })
  const parsed = start.parseOptions(['--role', role, ...flags])
  if (parsed.unknown.length > 0 || parsed.operands.length > 0) {
    throw new InvalidArgumentError(`not a flag of mesh start: ${[...parsed.unknown, ...parsed.operands].join(' ')}`)
  }
  return flags.map((flag, i) => i > 0 && PATH_FLAGS.has(flags[i - 1]) ? resolve(flag) : flag)
}

function unitPath (scope: ServiceScope, role: Role): string {
  const dir = scope === 'system' ? '/etc/systemd/system' : join(process.env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), 'systemd', 'user')
  return join(dir, unitName(role))
}

// sd_booted(3): systemd is the running init exactly when this directory exists.
function systemdRunning (): boolean {
  return existsSync('/run/systemd/system')
}

function systemctl (scope: ServiceScope, args: string[]): number {
  const result = spawnSync('systemctl', [...(scope === 'user' ? ['--user'] : []), ...args], { stdio: 'inherit' })
  if (result.error !== undefined) throw result.error
  return result.status ?? 1
}

function shellWord (word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, '\'\\\'\'')}'`
}

/** Where systemd cannot run the node: one line saying so, then the command to run instead; exit 1. */
function withoutSystemd (role: Role, flags: readonly string[]): void {
  process.stderr.write('systemd is not running on this machine (no /run/systemd/system): no service installed; run the node in the foreground instead:\n')
  process.stdout.write(['mesh', 'start', '--role', role, ...flags].map(shellWord).join(' ') + '\n')
  process.exitCode = 1
}

function scopeOption (): Option {
  const root = process.getuid?.() === 0
  return new Option('--scope <scope>', 'system (root: starts at boot) or user (your own systemd, ~/.config/systemd/user)').choices(['system', 'user']).default(root ? 'system' : 'user')
}

function roleOption (): Option {
  return new Option('--role <role>', 'coordinator or worker').choices(['coordinator', 'worker']).makeOptionMandatory()
}

/** `mesh service install|uninstall|status`: a systemd unit that keeps this machine's node running. */
export function serviceCommand (): Command {
  const service = new Command('service').description('keep this machine\'s node running with systemd (install, uninstall, status)')
  service.command('install')
    .description('write and enable a hardened systemd unit that runs "mesh start --role ROLE [flags]" and restarts it on failure; flags are those of mesh start')
    .addOption(roleOption())
    .addOption(scopeOption())
    .option('--print', 'print the unit instead of installing it')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(async (options: ServiceOptions, command: Command) => {
      const flags = startFlags(options.role, command.args)
      const mlock = flags.includes('--mlock')
      const start = [process.execPath, MESH_BIN, 'start', '--role', options.role, ...flags]
      const unit = renderUnit({ role: options.role, scope: options.scope, command: start, cacheDir: resolve(llmeshCacheDir()), user: userInfo().username, mlock })
      if (options.print === true) {
        process.stdout.write(unit)
        return
      }
      if (!systemdRunning()) {
        withoutSystemd(options.role, flags)
        return
      }
      if (options.scope === 'system' && process.getuid?.() !== 0) throw new InvalidArgumentError('--scope system needs root; use --scope user for your own systemd')
      const path = unitPath(options.scope, options.role)
      await mkdir(join(path, '..'), { recursive: true })
      await writeFile(path, unit, { mode: 0o644 })
      if (systemctl(options.scope, ['daemon-reload']) !== 0 || systemctl(options.scope, ['enable', '--now', unitName(options.role)]) !== 0) {
        process.exitCode = 1
        return
      }
      const home = options.scope === 'system' ? '/var/lib/llmesh' : join(process.env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'), 'llmesh')
      process.stdout.write([
        `installed ${path} and started ${unitName(options.role)}`,
        `its data dir is ${home}: run mesh commands for it as LLMESH_HOME=${home} mesh ...`,
        ...(options.scope === 'user' ? ['to keep it running while you are logged out: loginctl enable-linger'] : []),
        ''
      ].join('\n'))
    })
  service.command('uninstall')
    .description('stop, disable and remove the unit (the node\'s data dir stays)')
    .addOption(roleOption())
    .addOption(scopeOption())
    .action(async (options: ServiceOptions) => {
      if (!systemdRunning()) {
        process.stderr.write('systemd is not running on this machine (no /run/systemd/system): there is no service to remove\n')
        process.exitCode = 1
        return
      }
      systemctl(options.scope, ['disable', '--now', unitName(options.role)])
      await rm(unitPath(options.scope, options.role), { force: true })
      process.exitCode = systemctl(options.scope, ['daemon-reload'])
    })
  service.command('status')
    .description('systemd\'s status of the unit')
    .addOption(roleOption())
    .addOption(scopeOption())
    .action((options: ServiceOptions) => {
      if (!systemdRunning()) {
        process.stderr.write('systemd is not running on this machine (no /run/systemd/system): there is no service; "mesh status" shows a node started by hand\n')
        process.exitCode = 1
        return
      }
      process.exitCode = systemctl(options.scope, ['status', '--no-pager', unitName(options.role)])
    })
  return service
}
