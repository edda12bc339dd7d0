import { Command } from 'commander'
import { ApiKeyStore, apiKeyControl, type ApiKeyInfo, type NewApiKey } from '../../node/api-keys.js'
import { controlRequest, isAnswering, type ControlRequest } from '../../node/control-socket.js'
import { dataDir, exists, openDatastore } from '../../node/data-dir.js'
import { DataDirError } from '../../node/errors.js'

/**
 * Runs a key operation where the keys live: through the running node's control socket (level
 * lets one process open the datastore, and the API must see the change at once), or on the
 * datastore itself when no node runs.
 */
async function keyRequest (request: ControlRequest): Promise<unknown> {
  const dir = dataDir()
  if (await isAnswering(dir.controlSocket)) return await controlRequest(dir.controlSocket, dir.root, request)
  if (!await exists(dir.config)) throw new DataDirError(`${dir.root} holds no cluster; run "mesh init" on the coordinator first (or set LLMESH_HOME)`)
  const datastore = await openDatastore(dir)
  try {
    return await apiKeyControl(await ApiKeyStore.open(datastore), dir.apiKey, request)
  } finally {
    await datastore.close()
  }
}

/** One row per key, for a terminal. */
function keyTable (keys: ApiKeyInfo[]): string {
  const rows = [['ID', 'NAME', 'CREATED'], ...keys.map(key => [key.id, key.name === '' ? '-' : key.name, key.created])]
  const widths = rows[0].map((_, column) => Math.max(...rows.map(row => row[column].length)))
  return rows.map(row => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd()).join('\n') + '\n'
}

/** `mesh key add|list|revoke`: the API keys clients may use besides the one `mesh init` made. */
export function keyCommand (): Command {
  const key = new Command('key').description('manage the API keys clients send as "Authorization: Bearer <key>" (on the coordinator)')
  key.command('add')
    .description('create a new API key and print it (the only time it is shown)')
    .option('--name <name>', 'what the key is for, shown by "mesh key list"', '')
    .action(async (options: { name: string }) => {
      const added = await keyRequest({ op: 'key-add', name: options.name }) as NewApiKey
      process.stderr.write(`added API key ${added.id}${added.name === '' ? '' : ` (${added.name})`}; it is shown only now, so store it; "mesh key revoke ${added.id}" disables it\n`)
      process.stdout.write(`${added.key}\n`)
    })
  key.command('list')
    .description('list the API keys: id, name and creation time, never the keys themselves')
    .option('--json', 'print the list as JSON')
    .action(async (options: { json?: boolean }) => {
      const keys = await keyRequest({ op: 'key-list' }) as ApiKeyInfo[]
      process.stdout.write(options.json === true ? `${JSON.stringify(keys, null, 2)}\n` : keyTable(keys))
    })
  key.command('revoke')
    .description('disable an API key at once; requests with it get 401')
    .argument('<id>', 'the key\'s id, as "mesh key list" shows it')
    .action(async (id: string) => {
      const revoked = await keyRequest({ op: 'key-revoke', id }) as ApiKeyInfo
      process.stdout.write(`revoked API key ${revoked.id}${revoked.name === '' ? '' : ` (${revoked.name})`}\n`)
    })
  return key
}
