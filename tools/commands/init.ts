import { Command } from 'commander'
import { createCluster } from '../../node/create-cluster.js'
import { dataDir } from '../../node/data-dir.js'

/** `mesh init`: creates a cluster (CA, cluster id, API key, config) in the data dir. */
export function initCommand (): Command {
  return new Command('init')
    .description('create a new cluster here: this machine becomes its coordinator')
    .option('--force', 'replace an existing cluster in the data dir (every member must join again)')
    .action(async (options: { force?: boolean }) => {
      const dir = dataDir()
      const created = await createCluster(dir, options.force === true)
      process.stdout.write([
        `created cluster ${created.clusterId} in ${dir.root}`,
        `  node key      ${dir.nodeKey} (PeerId ${created.peerId})`,
        `  cluster CA    ${dir.caKey}`,
        `  API key       ${dir.apiKey}`,
        `  config        ${dir.config}`,
        `  certificate   coordinator, serial ${created.certificate.body.serial}, llama.cpp ${created.certificate.body.llamaCppTag}`,
        'next: "mesh start --role coordinator", then "mesh token" for each machine that should join',
        ''
      ].join('\n'))
    })
}
