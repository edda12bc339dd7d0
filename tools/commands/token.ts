import { Command, Option } from 'commander'
import { controlRequest } from '../../node/control-socket.js'
import { dataDir } from '../../node/data-dir.js'
import { NodeNotRunningError } from '../../node/errors.js'
import { parseDuration } from '../parse-duration.js'

/** `mesh token`: asks the running coordinator for a single-use invite and prints it. */
export function tokenCommand (): Command {
  return new Command('token')
    .description('print a single-use invite for another machine to "mesh join" (the coordinator must be running)')
    .addOption(new Option('--role <role>', 'role of the member the invite admits').choices(['worker', 'coordinator']).default('worker'))
    .addOption(new Option('--ttl <duration>', 'how long the invite stays valid, e.g. 30m, 1h, 7d').argParser(parseDuration).default(3_600_000, '1h'))
    .action(async (options: { role: string, ttl: number }) => {
      const dir = dataDir()
      const result = await controlRequest(dir.controlSocket, dir.root, { op: 'token', role: options.role, ttlMs: options.ttl }).catch((err: unknown) => {
        if (err instanceof NodeNotRunningError) throw new NodeNotRunningError(dir.root, 'invites carry the running coordinator\'s addresses, so start it first with "mesh start --role coordinator"')
        throw err
      }) as { invite: string, expiresAt: number }
      process.stderr.write(`single-use ${options.role} invite, valid until ${new Date(result.expiresAt).toISOString()}:\n`)
      process.stdout.write(`${result.invite}\n`)
    })
}
