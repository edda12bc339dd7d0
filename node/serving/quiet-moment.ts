import { setTimeout as delay } from 'node:timers/promises'
import type { ServingEngine } from '../../engine/serving-engine.js'

/**
 * Resolves once `serving` runs no generation, so that rebuilding the engine (to fold a returning
 * member in) interrupts no stream: at once when it is idle or not ready, else when its last
 * generation ends, after `maxDelayMs` under steady load, or when `signal` aborts (a re-plan
 * that cannot wait, e.g. after a loss).
 */
export async function quietMoment (serving: Pick<ServingEngine, 'state' | 'activeGenerations' | 'whenIdle'>, maxDelayMs: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted || serving.state !== 'ready' || serving.activeGenerations === 0) return
  await Promise.race([
    serving.whenIdle(),
    delay(maxDelayMs, undefined, { signal, ref: false }).catch(() => {})
  ])
}
