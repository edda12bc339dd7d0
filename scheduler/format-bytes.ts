const UNITS = ['KiB', 'MiB', 'GiB', 'TiB']

/** A byte count for people: "512 B", "1.5 MiB", "12.0 GiB". */
export function formatBytes (bytes: number): string {
  if (Math.abs(bytes) < 1024) return `${bytes} B`
  let value = bytes
  let unit = 'B'
  for (const next of UNITS) {
    if (Math.abs(value) < 1024) break
    value /= 1024
    unit = next
  }
  return `${value.toFixed(1)} ${unit}`
}

/** A byte count with its exact value, for error messages: "1.5 MiB (1572864 bytes)". */
export function formatBytesExact (bytes: number): string {
  return bytes < 1024 ? `${bytes} bytes` : `${formatBytes(bytes)} (${bytes} bytes)`
}
