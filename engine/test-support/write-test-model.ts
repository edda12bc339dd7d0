import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { writeGgufFile } from '../gguf/index.js'
import { DEFAULT_SYNTHETIC_MODEL_OPTIONS, syntheticModelContent, type SyntheticModelOptions } from '../synthetic-model/index.js'

/** A synthetic model written to a fresh temporary folder, and the way to remove it again. */
export interface TestModel {
  path: string
  /** the temporary folder holding it, for other files a test needs */
  dir: string
  remove: () => Promise<void>
}

/** Writes a synthetic llama model (the project's small defaults, or `overrides`) for a test. */
export async function writeTestModel (overrides: Partial<SyntheticModelOptions> = {}): Promise<TestModel> {
  const dir = await mkdtemp(join(tmpdir(), 'llmesh-engine-test-'))
  const path = join(dir, 'model.gguf')
  try {
    await writeGgufFile(path, syntheticModelContent({ ...DEFAULT_SYNTHETIC_MODEL_OPTIONS, ...overrides }))
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  }
  return { path, dir, remove: async () => { await rm(dir, { recursive: true, force: true }) } }
}
