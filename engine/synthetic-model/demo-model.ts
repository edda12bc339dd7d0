import { access, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { writeGgufFile } from '../gguf/index.js'
import { llmeshCacheDir } from '../llama-cpp/cache.js'
import type { SyntheticModelOptions } from './options.js'
import { syntheticModelContent } from './synthetic-model.js'

/**
 * The model `npm start` runs when no --model is given: large enough to split into several
 * pipeline stages, small enough (about 55 MB) to write in a second or two and decode fast on 2 cores.
 */
export const DEMO_MODEL_OPTIONS: Readonly<SyntheticModelOptions> = {
  layers: 8,
  embd: 512,
  ff: 1536,
  heads: 8,
  kvHeads: 8,
  ctx: 2048,
  type: 'f16',
  seed: 1
}

/** Path of the demo model in the cache (`$LLMESH_CACHE/models`), written there on first use. */
export async function ensureDemoModel (): Promise<string> {
  const { layers, embd, ff, heads, kvHeads, ctx, type, seed } = DEMO_MODEL_OPTIONS
  const dir = join(llmeshCacheDir(), 'models')
  const path = join(dir, `demo-l${layers}-e${embd}-f${ff}-h${heads}-kv${kvHeads}-c${ctx}-${type}-s${seed}.gguf`)
  try {
    await access(path)
    return path
  } catch {
    // not written yet
  }
  await mkdir(dir, { recursive: true })
  // writeGgufFile writes to a temporary file and renames it, so a reader never sees half a model.
  await writeGgufFile(path, syntheticModelContent(DEMO_MODEL_OPTIONS))
  return path
}
