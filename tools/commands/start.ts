import { Command, InvalidArgumentError, Option } from 'commander'
import { dataDir } from '../../node/data-dir.js'
import { createLog } from '../../node/log.js'
import { MeshNode } from '../../node/mesh-node.js'
import { isPeerAddress } from '../../node/static-peers.js'
import { parsePositiveInt } from '../cli-parsers.js'
import type { Role } from '../../node/certificate.js'
import type { Encryption } from '../../node/libp2p-node.js'

interface StartOptions {
  role: Role
  listen?: string[]
  peer: string[]
  apiPort: number
  encryption: Encryption
  mdns: boolean
  memory?: number
}

function collectPeer (value: string, previous: string[]): string[] {
  if (!isPeerAddress(value)) throw new InvalidArgumentError(`expected a multiaddr or host:port, got "${value}".`)
  return [...previous, value]
}

/** `mesh start`: runs the mesh node in the foreground until SIGINT/SIGTERM. */
export function startCommand (): Command {
  return new Command('start')
    .description('run this machine\'s mesh node in the foreground (logs on stdout; Ctrl-C stops it cleanly)')
    .addOption(new Option('--role <role>', 'coordinator or worker; must match the certificate').choices(['coordinator', 'worker']).makeOptionMandatory())
    .option('--listen <multiaddr...>', 'listen address; repeat for more; QUIC with /udp/PORT/quic-v1 (default /ip4/0.0.0.0/tcp/9090)')
    .option('--peer <addr>', 'static peer: multiaddr or host:port (DNS names are resolved); repeat for more', collectPeer, [])
    .addOption(new Option('--api-port <n>', 'port of the OpenAI-compatible API on the coordinator').argParser(parsePositiveInt).default(8080))
    .addOption(new Option('--encryption <kind>', 'transport encryption to prefer').choices(['noise', 'tls']).default('noise'))
    .option('--no-mdns', 'do not discover peers on the LAN with mDNS')
    .addOption(new Option('--memory <bytes>', 'memory offered to the cluster (default: free memory at start)').argParser(parsePositiveInt))
    .action(async (options: StartOptions) => {
      const log = createLog()
      const node = await MeshNode.start({
        dir: dataDir(),
        role: options.role,
        listen: options.listen ?? ['/ip4/0.0.0.0/tcp/9090'],
        peers: options.peer,
        encryption: options.encryption,
        mdns: options.mdns,
        memoryBytes: options.memory,
        apiPort: options.apiPort,
        log
      })
      await new Promise<void>(resolve => {
        const stop = (signal: string): void => {
          log('info', `${signal} received, stopping`)
          resolve()
        }
        process.once('SIGINT', stop)
        process.once('SIGTERM', stop)
      })
      await node.stop()
      log('info', 'stopped')
    })
}
