import { Command, Option } from 'commander'
import { GPU_CHOICES, type GpuChoice } from '../../engine/llama-cpp/build-options.js'
import { hardeningLibrary, hardeningSupported } from '../../engine/process-hardening.js'
import { nativeSockets } from '../../node/native-socket.js'
import { ensureLlamaCppToolsWithProgress, ensureNodeBindingWithProgress } from '../build-progress.js'
import { parsePositiveInt } from '../cli-parsers.js'

interface SetupOptions {
  gpu: GpuChoice
  jobs?: number
  print?: boolean
}

/**
 * `mesh setup`: builds llama-server and ggml-rpc-server from the llama.cpp source node-llama-cpp
 * ships, and the local engine's native binding: everything any command may use (`mesh up`
 * builds only what its job needs).
 */
export function setupCommand (): Command {
  return new Command('setup')
    .description('build the llama.cpp tools (llama-server, ggml-rpc-server) and the local engine\'s native binding into the cache, or find them there')
    .addOption(new Option('--gpu <backend>', 'GPU backend to compile in; auto uses CUDA when nvcc and an NVIDIA GPU are present').choices(GPU_CHOICES).default('auto'))
    .addOption(new Option('--jobs <n>', 'parallel compile jobs of the llama.cpp tools (default: every core the CPU budget allows: the affinity mask, capped by a cgroup CPU quota)').argParser(parsePositiveInt))
    .option('--print', 'print the tool paths as JSON on stdout (building them first if needed)')
    .action(async (options: SetupOptions) => {
      const controller = new AbortController()
      const abort = (): void => { controller.abort(new Error('mesh setup was interrupted; run it again to resume the build')) }
      process.once('SIGINT', abort)
      process.once('SIGTERM', abort)
      try {
        const tools = await ensureLlamaCppToolsWithProgress({ gpu: options.gpu, jobs: options.jobs, signal: controller.signal })
        await ensureNodeBindingWithProgress({ signal: controller.signal })
        // Built now, not at the first `mesh start`: every process llmesh runs loads it.
        if (hardeningSupported) hardeningLibrary()
        const sockets = nativeSockets()
        if (sockets.addon === undefined) process.stderr.write(`mesh setup: the tunnel will run on Node's sockets and TLS, at a higher cost per message: ${sockets.why}\n`)
        if (options.print === true) {
          const { llamaCppTag, rpcServer, llamaServer, flags } = tools
          process.stdout.write(`${JSON.stringify({ llamaCppTag, rpcServer, llamaServer, flags })}\n`)
          return
        }
        process.stdout.write([
          `llama.cpp ${tools.llamaCppTag} tools ${tools.fromCache ? 'found in the cache' : 'built'}:`,
          `  llama-server     ${tools.llamaServer}`,
          `  ggml-rpc-server  ${tools.rpcServer}`,
          `  flags            ${tools.flags.join(' ')}`,
          ''
        ].join('\n'))
      } finally {
        process.off('SIGINT', abort)
        process.off('SIGTERM', abort)
      }
    })
}
