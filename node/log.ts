/** Severity of a log line. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

/** Writes one readable log line. */
export type Log = (level: LogLevel, message: string) => void

/** True when LLMESH_LOG=debug asks for debug lines (request summaries, control requests); never bodies. */
export function debugLogging (env: NodeJS.ProcessEnv = process.env): boolean {
  return env.LLMESH_LOG === 'debug'
}

/** A log that prints "ISO-time level message" lines to `out` (stdout by default); debug lines only when `debug`. */
export function createLog (out: NodeJS.WritableStream = process.stdout, debug = debugLogging()): Log {
  return (level, message) => {
    if (level === 'debug' && !debug) return
    out.write(`${new Date().toISOString()} ${level.padEnd(5)} ${message}\n`)
  }
}
