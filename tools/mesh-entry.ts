import { fileURLToPath } from 'node:url'

/** Path of the compiled `mesh` entry point, for code that runs the CLI as a child process. */
export const MESH_BIN = fileURLToPath(new URL('./mesh.cjs', import.meta.url))
