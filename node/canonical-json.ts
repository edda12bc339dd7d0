/**
 * JSON with object keys sorted at every level and no whitespace, so that the same value
 * always encodes to the same bytes: what a signature needs.
 */
export function canonicalJson (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (typeof value === 'object' && value !== null) {
    const entries = Object.keys(value).sort().map(key => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`)
    return `{${entries.join(',')}}`
  }
  if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('canonical JSON cannot encode non-finite numbers')
  return JSON.stringify(value)
}
