/** Severity of a log line. */
export type LogLevel = 'info' | 'warn' | 'error'

/** Writes one readable log line. */
export type Log = (level: LogLevel, message: string) => void

/** A log that prints "ISO-time level message" lines to `out` (stdout by default). */
export function createLog (out: NodeJS.WritableStream = process.stdout): Log {
  return (level, message) => {
    out.write(`${new Date().toISOString()} ${level.padEnd(5)} ${message}\n`)
  }
}
