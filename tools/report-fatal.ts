/**
 * Ends the process after an error with one readable line on stderr and a non-zero exit.
 * The stack is only shown with LLMESH_DEBUG=1: users need the sentence, developers the trace.
 */
export function reportFatal (err: unknown): never {
  const message = err instanceof Error ? err.message : String(err)
  process.stderr.write(`mesh: ${message}\n`)
  if (process.env.LLMESH_DEBUG === '1' && err instanceof Error && err.stack != null) {
    process.stderr.write(`${err.stack}\n`)
  }
  process.exit(1)
}
