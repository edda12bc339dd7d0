// The `mesh` command line: one program, one subcommand per job (started by mesh.cts).
import { Command } from 'commander'
import { hardeningSupported, hardenThisProcess } from '../engine/process-hardening.js'
import { reportFatal } from './report-fatal.js'
import { versionLine } from './version.js'

/**
 * Each subcommand is imported only when it runs: libp2p and node-llama-cpp take seconds to
 * load, and `mesh setup` or `mesh status` should not wait for modules they never use.
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  setup: async () => (await import('./commands/setup.js')).setupCommand(),
  'make-test-model': async () => (await import('./commands/make-test-model.js')).makeTestModelCommand(),
  generate: async () => (await import('./commands/generate.js')).generateCommand(),
  bench: async () => (await import('./commands/bench.js')).benchCommand(),
  init: async () => (await import('./commands/init.js')).initCommand(),
  token: async () => (await import('./commands/token.js')).tokenCommand(),
  join: async () => (await import('./commands/join.js')).joinCommand(),
  'ca-cert': async () => (await import('./commands/ca-cert.js')).caCertCommand(),
  revoke: async () => (await import('./commands/revoke.js')).revokeCommand(),
  key: async () => (await import('./commands/key.js')).keyCommand(),
  start: async () => (await import('./commands/start.js')).startCommand(),
  status: async () => (await import('./commands/status.js')).statusCommand(),
  service: async () => (await import('./commands/service.js')).serviceCommand(),
  up: async () => (await import('./commands/up.js')).upCommand(),
  audit: async () => (await import('./commands/audit.js')).auditCommand()
}

const program = new Command('mesh')
  .description('llmesh: the machines on your LAN as one private LLM server')
  .showHelpAfterError()
  .version(versionLine(), '-V, --version', 'print llmesh\'s version and the llama.cpp release it builds')

try {
  const requested = process.argv[2]
  // Before anything of the cluster is loaded: a crash must not write keys, prompts or replies to
  // disk. Not for `mesh setup`, which holds neither and must run before a C compiler is checked.
  if (hardeningSupported && requested !== 'setup') hardenThisProcess()
  // An unknown name or `mesh --help` needs every command, to list them or suggest one.
  const names = requested === '--version' || requested === '-V' ? [] : requested != null && requested in COMMANDS ? [requested] : Object.keys(COMMANDS)
  for (const name of names) program.addCommand(await COMMANDS[name]())
  await program.parseAsync(process.argv)
} catch (err) {
  reportFatal(err)
}
