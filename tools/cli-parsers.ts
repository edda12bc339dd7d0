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
