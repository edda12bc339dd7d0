import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'

/** True when `path` is a file this process may execute. */
export function isExecutable (path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** Returns the full path of an executable found on PATH (or in `extraDirs`), or undefined. */
export function findExecutable (name: string, extraDirs: string[] = []): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), ...extraDirs].filter(dir => dir !== '')
  return dirs.map(dir => join(dir, name)).find(isExecutable)
}
