// The README's privacy promise is a table, one party per row, each naming the test that checks
// it: every party the promise must cover has a row, and every row names a test that exists.
import assert from 'node:assert/strict'
import { access, readFile } from 'node:fs/promises'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const PARTIES = ['the coordinator', 'a worker, privacy on', 'a worker, privacy off', 'a worker\'s disk', 'any node\'s disk, after a crash', 'swap', 'the network', 'logs', 'metrics', 'the audit ledger', 'the web dashboard']

describe('README privacy promise', () => {
  it('has a row for every party, each naming a test that exists', async () => {
    const readme = await readFile(`${ROOT}README.md`, 'utf8')
    const section = /^## Privacy\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1]
    assert.ok(section !== undefined, 'README.md has no "## Privacy" section')
    const rows = section.split('\n').filter(line => line.startsWith('| ') && !line.startsWith('| party') && !line.startsWith('|---'))
      .map(line => line.split(' | ').map(cell => cell.replace(/^\| |\s*\|$/g, '')))
    assert.deepEqual(rows.map(([party]) => party), PARTIES)
    for (const [party, , checkedBy] of rows) {
      const test = /^`([\w/-]+\.test\.ts)`$/.exec(checkedBy ?? '')?.[1]
      assert.ok(test !== undefined, `the row of ${party} names no test`)
      await access(`${ROOT}${test}`)
    }
  })
})
