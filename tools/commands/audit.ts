import { Command, Option } from 'commander'
import { AuditLedger, type AuditRecord, type AuditVerification } from '../../node/audit-ledger.js'
import type { ControlRequest } from '../../node/control-socket.js'
import { dataDir, type DataDir } from '../../node/data-dir.js'
import { AuditLedgerError } from '../../node/errors.js'
import { parsePositiveInt } from '../cli-parsers.js'
import { askNodeOrDatastore, textTable } from '../node-data.js'

async function askLedger (dir: DataDir, request: ControlRequest, direct: (ledger: AuditLedger) => Promise<unknown>): Promise<unknown> {
  return await askNodeOrDatastore(dir, request, async datastore => await direct(new AuditLedger(datastore)))
}

function formatRecord (r: AuditRecord): string[] {
  return [
    String(r.seq), r.time.slice(0, 19).replace('T', ' '), r.requestId.slice(0, 8), r.keyIdHash ?? '-',
    (r.model ?? '-').slice(0, 20), String(r.promptTokens), String(r.completionTokens), String(r.durationMs), String(r.status)
  ]
}

function verifyCommand (): Command {
  return new Command('verify')
    .description('check the whole hash chain of the audit ledger; names the first bad record and exits 1 if one is found')
    .option('--json', 'print {"ok","records","badSeq","reason"} as one JSON object (exit 1 still when not ok)')
    .action(async (options: { json?: boolean }) => {
      const dir = dataDir()
      const result = await askLedger(dir, { op: 'audit-verify' }, async ledger => await ledger.verify()) as AuditVerification
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify(result)}\n`)
        if (!result.ok) process.exitCode = 1
        return
      }
      if (!result.ok) {
        throw new AuditLedgerError(`the audit ledger in ${dir.root} does not verify at record ${String(result.badSeq)}: ${String(result.reason)}; the ${result.records} records before it are intact`)
      }
      process.stdout.write(`audit ledger verified: ${result.records} records, chain intact\n`)
    })
}

function tailCommand (): Command {
  return new Command('tail')
    .description('show the most recent audit records: time, request id, hashed key id, model, tokens, duration, status')
    .addOption(new Option('-n, --lines <n>', 'how many records').argParser(parsePositiveInt).default(20))
    .option('--json', 'print the records as a JSON array, oldest first')
    .action(async (options: { lines: number, json?: boolean }) => {
      const dir = dataDir()
      const records = await askLedger(dir, { op: 'audit-tail', count: options.lines }, async ledger => await ledger.tail(options.lines)) as AuditRecord[]
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify(records)}\n`)
        return
      }
      if (records.length === 0) {
        process.stdout.write('the audit ledger is empty: no API request has finished yet\n')
        return
      }
      const header = ['SEQ', 'TIME (UTC)', 'REQUEST', 'KEY', 'MODEL', 'PROMPT', 'COMPLETION', 'MS', 'STATUS']
      process.stdout.write(`${textTable([header, ...records.map(formatRecord)], new Set([0, 5, 6, 7]))}\n`)
    })
}

/** `mesh audit verify|tail`: the hash-chained ledger of finished API requests. */
export function auditCommand (): Command {
  return new Command('audit')
    .description('the audit ledger of finished API requests (counts and outcomes, never content)')
    .addCommand(verifyCommand())
    .addCommand(tailCommand())
}
