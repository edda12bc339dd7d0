import { requestStatus } from '../../node/status-request.js'
import { waitFor } from '../wait-for.js'
import { ApiCheckError } from './errors.js'
import type { EngineStatus } from '../../node/serving/engine-status.js'
import type { DataDir } from '../../node/data-dir.js'

const API_READY_MS = 5 * 60_000

async function healthOk (url: string): Promise<boolean> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5000) })
  await response.body?.cancel()
  return response.status === 200
}

// A layout made before the last worker joined is replaced when it joins; wait for the one that
// knows every worker, used or not.
function layoutCoversWorkers (engine: EngineStatus, workers: number): boolean {
  if (workers === 0) return true
  const groups = engine.groups ?? []
  if (groups.length === 0) return false
  return groups.reduce((sum, group) => sum + group.plan.stages.filter(s => s.role === 'worker').length, 0) + (engine.unusedWorkers ?? []).length >= workers
}

/**
 * Waits until the coordinator's API answers `GET /health` with 200 and its engine serves a
 * layout that accounts for all `workers`; returns that engine's status.
 */
export async function waitForApi (apiBase: string, coordinator: DataDir, workers: number, signal: AbortSignal): Promise<EngineStatus> {
  return await waitFor('the API to answer GET /health', async () => {
    if (!(await healthOk(`${apiBase}/health`))) return undefined
    const { engine } = await requestStatus(coordinator)
    return engine?.state === 'ready' && layoutCoversWorkers(engine, workers) ? engine : undefined
  }, API_READY_MS, signal)
}

/** Id of the model the API serves, from `GET /v1/models` (what a client puts in "model"). */
export async function servedModelId (apiBase: string, apiKey: string): Promise<string> {
  const response = await fetch(`${apiBase}/v1/models`, { headers: { authorization: `Bearer ${apiKey}` }, signal: AbortSignal.timeout(10_000) })
  if (!response.ok) throw new ApiCheckError(`the API at ${apiBase}/v1/models answered ${response.status} to the cluster's own API key; see the coordinator's log`)
  const { data } = await response.json() as { data: Array<{ id: string }> }
  return data[0].id
}
