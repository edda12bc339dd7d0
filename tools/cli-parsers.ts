import { InvalidArgumentError } from 'commander'

/** commander argument parser for options that take a whole number of at least 1. */
export function parsePositiveInt (value: string): number {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`expected a whole number of at least 1, got "${value}".`)
  return n
}

/** commander argument parser for options that take a whole number of at least 0. */
export function parseNonNegativeInt (value: string): number {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`expected a whole number of at least 0, got "${value}".`)
  return n
}

/** commander argument parser for a TCP port: 1 to 65535, or 0 for a free one. */
export function parsePort (value: string): number {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`expected a TCP port from 1 to 65535 (0: a free one), got "${value}".`)
  return n
}
