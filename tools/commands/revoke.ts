import { Command } from 'commander'
import { controlRequest } from '../../node/control-socket.js'
import { dataDir } from '../../node/data-dir.js'

/** `mesh revoke <peerId>`: the running coordinator revokes a member. */
export function revokeCommand (): Command {
  return new Command('revoke')
    .description('revoke a member: its connections are closed and it cannot rejoin (run on the coordinator while it runs)')
    .argument('<peerId>', 'the member\'s PeerId, as "mesh status" shows it')
    .action(async (peerId: string) => {
      const dir = dataDir()
      const result = await controlRequest(dir.controlSocket, dir.root, { op: 'revoke', peerId }) as { version: number }
      process.stdout.write(`revoked ${peerId} (revocation list version ${result.version}); its connections are being closed\n`)
    })
}
