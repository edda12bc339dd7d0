import { Command } from 'commander'
import { dataDir } from '../../node/data-dir.js'
import { joinCluster } from '../../node/join-cluster.js'

/** `mesh join <invite>`: obtains a certificate from the coordinator and stores it. */
export function joinCommand (): Command {
  return new Command('join')
    .description('join a cluster with an invite printed by "mesh token" on its coordinator')
    .argument('<invite>', 'the invite string (llmesh1-...)')
    .option('--force', 'leave the cluster this data dir belongs to and join this one')
    .action(async (invite: string, options: { force?: boolean }) => {
      const dir = dataDir()
      const joined = await joinCluster(dir, invite, options.force === true)
      const cert = joined.certificate.body
      process.stdout.write([
        `joined cluster ${joined.clusterId} as ${cert.role}`,
        `  PeerId        ${joined.peerId}`,
        `  certificate   serial ${cert.serial}, valid until ${new Date(cert.notAfter).toISOString()}`,
        `  coordinator   ${joined.coordinatorPeerId}`,
        `next: "mesh start --role ${cert.role}"`,
        ''
      ].join('\n'))
    })
}
