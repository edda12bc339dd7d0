import { InvalidArgumentError } from 'commander'

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** commander argument parser for durations such as "500ms", "30s", "15m", "1h", "7d"; returns ms. */
export function parseDuration (value: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value.trim())
  if (match == null) throw new InvalidArgumentError(`expected a duration such as 30s, 15m, 1h or 7d, got "${value}".`)
  const ms = Math.round(Number(match[1]) * UNITS[match[2]])
  if (ms < 1) throw new InvalidArgumentError(`the duration "${value}" is too short.`)
  return ms
}
