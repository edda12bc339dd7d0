import { InvalidArgumentError, Option } from 'commander'
import { checkPlacement, PLACEMENTS, type Placement } from '../scheduler/index.js'
import { parsePositiveInt } from './cli-parsers.js'

/** The serving layout options that `mesh start` (for its coordinator) and `mesh up` share. */
export interface PlacementOptions {
  placement: Placement
  replicas?: number
}

/** `--placement`, its help prefixed with `who` (e.g. "coordinator: "). */
export function placementOption (who = ''): Option {
  return new Option('--placement <layout>', `${who}pipeline serves one pipeline over all workers (adds memory), replicas one llama-server per group of workers that holds the model (adds throughput), auto whichever is predicted faster`).choices(PLACEMENTS).default('auto')
}

/** `--replicas`, its help prefixed with `who`. */
export function replicasOption (who = ''): Option {
  return new Option('--replicas <n>', `${who}serve exactly N replica groups (refused when they do not fit)`).argParser(parsePositiveInt)
}

/** Refuses combinations the scheduler would refuse (e.g. --placement pipeline --replicas 2) as a usage error, before anything starts. */
export function checkPlacementOptions (options: PlacementOptions): void {
  try {
    checkPlacement(options)
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message)
  }
}

/** The same options as `mesh start` arguments, for a coordinator started by another command. */
export function placementArgs (options: PlacementOptions): string[] {
  return ['--placement', options.placement, ...options.replicas !== undefined ? ['--replicas', String(options.replicas)] : []]
}
