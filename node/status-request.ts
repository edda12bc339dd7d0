import { controlRequest } from './control-socket.js'
import type { DataDir } from './data-dir.js'
import type { StatusReport } from './status-report.js'

/** Asks the node running on `dir` for its status report (what `mesh status --json` prints). */
export async function requestStatus (dir: DataDir): Promise<StatusReport> {
  return await controlRequest(dir.controlSocket, dir.root, { op: 'status' }) as StatusReport
}
