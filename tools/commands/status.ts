import { Command, Option } from 'commander'
import { controlRequest } from '../../node/control-socket.js'
import { dataDir, type DataDir } from '../../node/data-dir.js'
import { parsePositiveInt } from '../cli-parsers.js'
import { renderStatus } from '../status-render.js'
import type { StatusReport } from '../../node/status-report.js'

// Cursor home, then each line cleared to its end and the rest of the screen cleared: the
// view is redrawn in place without flicker.
const HOME = '\u001b[H'
const CLEAR_LINE_END = '\u001b[K'
const CLEAR_SCREEN_END = '\u001b[J'
const CLEAR_SCREEN = '\u001b[2J'

async function fetchStatus (dir: DataDir): Promise<StatusReport> {
  return await controlRequest(dir.controlSocket, dir.root, { op: 'status' }) as StatusReport
}

async function watch (dir: DataDir, json: boolean, intervalS: number): Promise<never> {
  if (!json) process.stdout.write(HOME + CLEAR_SCREEN)
  for (;;) {
    let text: string
    try {
      const report = await fetchStatus(dir)
      text = json ? JSON.stringify(report) : renderStatus(report).join('\n')
    } catch (err) {
      // The node may be restarting: say so in place and keep watching.
      if (json) throw err
      text = `mesh: ${(err as Error).message}`
    }
    const stamp = `every ${intervalS} s, ${new Date().toISOString().slice(11, 19)} UTC (Ctrl-C to stop)`
    process.stdout.write(json ? `${text}\n` : `${HOME}${[stamp, '', ...text.split('\n')].map(l => l + CLEAR_LINE_END).join('\n')}\n${CLEAR_SCREEN_END}`)
    await new Promise(resolve => setTimeout(resolve, intervalS * 1000))
  }
}

/** `mesh status`: this node, its members, the engine and stage plan, load and warnings. */
export function statusCommand (): Command {
  return new Command('status')
    .description('show this node, the cluster members it knows and, on the coordinator, the engine, stage plan, load and warnings (needs the local node running)')
    .option('--json', 'print {"self":{...},"members":[...],"engine":{...}|null,"warnings":[...]} as one JSON object (one per refresh with --watch)')
    .option('--watch', 'refresh in place until Ctrl-C')
    .addOption(new Option('--interval <seconds>', 'seconds between refreshes with --watch').argParser(parsePositiveInt).default(2))
    .action(async (options: { json?: boolean, watch?: boolean, interval: number }) => {
      const dir = dataDir()
      if (options.watch === true) await watch(dir, options.json === true, options.interval)
      const report = await fetchStatus(dir)
      process.stdout.write(options.json === true ? `${JSON.stringify(report)}\n` : `${renderStatus(report).join('\n')}\n`)
    })
}
