// Run by ensureNodeBinding as a process of its own: node-llama-cpp writes the build's output to
// the stdout of the process that builds, where the parent reads it for its log and progress.
import { getLlama } from 'node-llama-cpp'
import { NODE_LLAMA_OPTIONS } from './node-binding.js'

const llama = await getLlama({ ...NODE_LLAMA_OPTIONS, build: 'forceRebuild', progressLogs: true })
await llama.dispose()
