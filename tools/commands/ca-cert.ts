import { Command } from 'commander'
import { loadOrCreateApiCa } from '../../node/api-certificate.js'
import { dataDir, readClusterConfig } from '../../node/data-dir.js'

/** `mesh ca-cert`: prints the certificate that HTTPS clients of the API (`--tls auto`) trust. */
export function caCertCommand (): Command {
  return new Command('ca-cert')
    .description('print the cluster\'s CA certificate (PEM) that HTTPS clients trust for the API served with --tls auto (coordinator)')
    .action(async () => {
      const dir = dataDir()
      const { clusterId } = await readClusterConfig(dir)
      process.stdout.write((await loadOrCreateApiCa(dir, clusterId)).certPem)
    })
}
