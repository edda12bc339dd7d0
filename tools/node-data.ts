import type { LevelDatastore } from 'datastore-level'
import { controlRequest, isAnswering, type ControlRequest } from '../node/control-socket.js'
import { openDatastore, readClusterConfig, type DataDir } from '../node/data-dir.js'

/**
 * Answers `request` where the node's data is: through the running node's control socket (level
 * admits one process, and the node must see a change at once), or, when no node runs, with
 * `direct` on the datastore, opened for it and closed again.
 */
export async function askNodeOrDatastore (dir: DataDir, request: ControlRequest, direct: (datastore: LevelDatastore) => Promise<unknown>): Promise<unknown> {
  if (await isAnswering(dir.controlSocket)) return await controlRequest(dir.controlSocket, dir.root, request)
  // A data dir without a cluster has nothing to ask: say so rather than create an empty datastore.
  await readClusterConfig(dir)
  const datastore = await openDatastore(dir)
  try {
    return await direct(datastore)
  } finally {
    await datastore.close()
  }
}

/** Lays out rows (the first one the header) as columns two spaces apart; columns in `rightAligned` are padded on the left. */
export function textTable (rows: string[][], rightAligned: ReadonlySet<number> = new Set()): string {
  const widths = rows[0].map((_, column) => Math.max(...rows.map(row => row[column].length)))
  return rows.map(row => row.map((cell, column) => rightAligned.has(column) ? cell.padStart(widths[column]) : cell.padEnd(widths[column])).join('  ').trimEnd()).join('\n')
}
