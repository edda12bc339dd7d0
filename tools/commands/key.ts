import { Command } from 'commander'
import { ApiKeyStore, apiKeyControl, type ApiKeyInfo, type NewApiKey } from '../../node/api-keys.js'
import type { ControlRequest } from '../../node/control-socket.js'
import { dataDir } from '../../node/data-dir.js'
import { askNodeOrDatastore, textTable } from '../node-data.js'

// The keys live in the node's datastore; a running coordinator must see a change at once.
async function keyRequest (request: ControlRequest): Promise<unknown> {
  const dir = dataDir()
  return await askNodeOrDatastore(dir, request, async datastore => await apiKeyControl(await ApiKeyStore.open(datastore), dir.apiKey, request))
}

/** One row per key, for a terminal. */
function keyTable (keys: ApiKeyInfo[]): string {
  return textTable([['ID', 'NAME', 'CREATED'], ...keys.map(key => [key.id, key.name === '' ? '-' : key.name, key.created])]) + '\n'
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
