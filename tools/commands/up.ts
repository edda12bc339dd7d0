import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { resolve } from 'node:path'
import { Command, Option } from 'commander'
import { inspectModelFile } from '../../engine/model-file.js'
import { ensureDemoModel } from '../../engine/synthetic-model/demo-model.js'
import { dataDir } from '../../node/data-dir.js'
import type { EngineStatus } from '../../node/serving/engine-status.js'
import { ensureLlamaCppToolsWithProgress, ensureNodeBindingWithProgress } from '../build-progress.js'
import { parseNonNegativeInt, parsePositiveInt } from '../cli-parsers.js'
import { parseDuration } from '../parse-duration.js'
import { DEFAULT_DRAIN_TIMEOUT_MS } from '../../node/serving/coordinator.js'
import { servedModelId, waitForApi } from '../up/api-ready.js'
import { ApiPortInUseError, CoordinatorExitedError } from '../up/errors.js'
import { LocalCluster, upLayout } from '../up/local-cluster.js'
import { checkPlacementOptions, placementArgs, placementOption, replicasOption, type PlacementOptions } from '../placement-options.js'

interface UpOptions extends PlacementOptions {
  workers: number
  model?: string
  apiPort: number
  parallel: number
  mlock?: boolean
  drainTimeout: number
}

async function assertPortFree (port: number): Promise<void> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => { reject(err.code === 'EADDRINUSE' ? new ApiPortInUseError(port) : err) })
    server.listen(port, '127.0.0.1', resolve)
  })
  await new Promise(resolve => server.close(resolve))
}

/** What a coordinator needs to stop after its drain: engine, tunnels and node. */
const COORDINATOR_SHUTDOWN_MS = 10_000

function shellQuote (text: string): string {
  return `'${text.replaceAll("'", "'\\''")}'`
}

/** What the user reads once the API serves: where, with which key, how to try it, and the plan. */
function readyText (apiBase: string, apiKey: string, modelId: string, engine: EngineStatus): string {
  const body = JSON.stringify({ model: modelId, messages: [{ role: 'user', content: 'Hello!' }] })
  return [
    '',
    `API: ${apiBase}/v1`,
    `api key: ${apiKey}`,
    'try it:',
    `  curl ${apiBase}/v1/chat/completions -H ${shellQuote(`Authorization: Bearer ${apiKey}`)} -H 'Content-Type: application/json' -d ${shellQuote(body)}`,
    `stage plan (${engine.kind ?? 'no engine'}):`,
    (engine.planTable ?? '-').trimEnd(),
    'ready',
    ''
  ].join('\n')
}

// Resolves when `signal` is aborted; never rejects.
async function aborted (signal: AbortSignal): Promise<void> {
  await new Promise<void>(resolve => {
    if (signal.aborted) resolve()
    else signal.addEventListener('abort', () => { resolve() }, { once: true })
  })
}

/** `mesh up`: a coordinator and N workers on this machine, serving the API, until Ctrl-C. */
export function upCommand (): Command {
  return new Command('up')
    .description('run a whole mesh on this machine: a coordinator and workers joined over libp2p on 127.0.0.1, serving the OpenAI-compatible API (Ctrl-C stops it)')
    .addOption(new Option('--workers <n>', 'worker processes to start').argParser(parseNonNegativeInt).default(2))
    .option('--model <path>', 'GGUF model to serve (default: the synthetic demo model)')
    .addOption(new Option('--api-port <n>', 'port of the API on 127.0.0.1').argParser(parsePositiveInt).default(8080))
    .addOption(new Option('--parallel <n>', 'requests the engine generates at once; they share the context evenly').argParser(parsePositiveInt).default(1))
    .addOption(placementOption())
    .addOption(replicasOption())
    .option('--mlock', 'lock every node\'s llama-server and rpc-server memory (weights, KV cache) in RAM, where the machine allows it (mesh status says whether it did)')
    .addOption(new Option('--drain-timeout <duration>', 'on Ctrl-C or SIGTERM, how long requests in flight may take to finish while new ones get 503, e.g. 30s').argParser(parseDuration).default(DEFAULT_DRAIN_TIMEOUT_MS, '30s'))
    .action(async (options: UpOptions) => {
      checkPlacementOptions(options)
      await ensureLlamaCppToolsWithProgress()
      // Only a mesh without workers serves with the local engine. With workers it is a stand-in
      // (the first plan, before they join; all of them lost), where node-llama-cpp's prebuilt
      // binary serves until `mesh setup` builds the native one: not worth 12 minutes more on 2 cores.
      if (options.workers === 0) await ensureNodeBindingWithProgress()
      const modelPath = options.model !== undefined ? resolve(options.model) : await ensureDemoModel()
      await inspectModelFile(modelPath)
      await assertPortFree(options.apiPort)
      const progress = (line: string): void => { process.stdout.write(`${line}\n`) }
      const apiBase = `http://127.0.0.1:${options.apiPort}`

      const stop = new AbortController()
      const cluster = new LocalCluster({
        layout: upLayout(dataDir().root),
        workers: options.workers,
        nodeArgs: options.mlock === true ? ['--mlock'] : [],
        coordinatorArgs: ['--model', modelPath, '--engine', 'auto', '--api-host', '127.0.0.1', '--api-port', String(options.apiPort), '--parallel', String(options.parallel), ...placementArgs(options), '--drain-timeout', `${options.drainTimeout}ms`],
        progress,
        signal: stop.signal,
        // The drain, then the engine and the node shutting down.
        coordinatorStopGraceMs: options.drainTimeout + COORDINATOR_SHUTDOWN_MS
      })
      const onSignal = (signal: NodeJS.Signals): void => {
        if (stop.signal.aborted) {
          progress(`${signal} again: killing the nodes`)
          cluster.kill()
          return
        }
        progress(`${signal} received, stopping the nodes (press Ctrl-C again to kill them at once)`)
        stop.abort()
      }
      const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']
      for (const signal of signals) process.on(signal, onSignal)

      let failure: unknown
      try {
        progress(`starting a coordinator and ${options.workers} worker${options.workers === 1 ? '' : 's'} serving ${modelPath}`)
        const engine = await cluster.start(async signal => await waitForApi(apiBase, cluster.coordinatorDir, options.workers, signal))
        const apiKey = (await readFile(cluster.coordinatorDir.apiKey, 'utf8')).trim()
        process.stdout.write(readyText(apiBase, apiKey, await servedModelId(apiBase, apiKey), engine))
        const exited = await Promise.race([cluster.coordinatorExit(), aborted(stop.signal)])
        if (exited !== undefined) throw new CoordinatorExitedError(`${await exited.describeEnd()}\nthe API is gone, so mesh up stopped the workers`)
      } catch (err) {
        // After Ctrl-C, waits end with an abort error: that is the requested stop, not a failure.
        if (!stop.signal.aborted) failure = err
      } finally {
        await cluster.stop()
        for (const signal of signals) process.off(signal, onSignal)
      }
      if (failure !== undefined) throw failure
      progress('stopped')
    })
}
