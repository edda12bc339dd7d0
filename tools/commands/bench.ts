import { Command, InvalidArgumentError, Option } from 'commander'
import { benchLocal } from '../../engine/benchmark.js'
import { parsePositiveInt } from '../cli-parsers.js'
import type { LayerRange } from '../bench/failover-bench.js'
import type { TunnelCarrier } from '../tunnel-node.js'

interface BenchLocalOptions {
  model: string
  tokens: number
  runs: number
  json?: boolean
}

// A decode speed is measured between the first and the last token, so it needs two at least.
function parseTokens (value: string): number {
  const n = parsePositiveInt(value)
  if (n < 2) throw new InvalidArgumentError(`expected at least 2 tokens to time the decode, got "${value}".`)
  return n
}

/** `mesh bench local`: decode speed of the local engine against llama-server on the same model. */
function benchLocalCommand (): Command {
  return new Command('local')
    .description('measure the local engine (node-llama-cpp) against llama-server: same model, prompt and thread count, greedy decoding')
    .requiredOption('--model <path>', 'GGUF model to run')
    .addOption(new Option('--tokens <n>', 'tokens to generate per measured run').argParser(parseTokens).default(128))
    .addOption(new Option('--runs <n>', 'measured runs per engine; the median speed is reported').argParser(parsePositiveInt).default(3))
    .option('--json', 'print one JSON object instead of a summary')
    .action(async (options: BenchLocalOptions) => {
      const { result, binding } = await benchLocal({ modelPath: options.model, tokens: options.tokens, runs: options.runs })
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify(result)}\n`)
        return
      }
      process.stdout.write([
        `model          ${result.model}`,
        `threads        ${result.threads}`,
        `local engine   ${result.tokens_per_second.toFixed(1)} tokens/s (${binding === 'localBuild' ? 'native node-llama-cpp build' : 'prebuilt node-llama-cpp binary: run "mesh setup" for the faster native build'})`,
        `llama-server   ${result.baseline.tokens_per_second.toFixed(1)} tokens/s`,
        `ratio          ${result.ratio.toFixed(3)}`,
        `same tokens    ${result.identical_output ? 'yes' : 'NO'}`,
        ''
      ].join('\n'))
    })
}

interface BenchClusterOptions {
  workers: number
  model: string
  tokens: number
  runs: number
  transport: 'tcp' | 'quic'
  carrier: TunnelCarrier
  json?: boolean
}

/** `mesh bench cluster`: llama-server through the libp2p tunnel against `--rpc` pointed at the same rpc-servers. */
function benchClusterCommand (): Command {
  return new Command('cluster')
    .description('measure llama-server split over rpc-servers through the libp2p tunnel against --rpc pointed at them directly: same plan, processes and prompt')
    .requiredOption('--model <path>', 'GGUF model to run')
    .addOption(new Option('--workers <n>', 'rpc-servers (workers) to split the model over').argParser(parsePositiveInt).default(2))
    .addOption(new Option('--tokens <n>', 'tokens to generate per measured run').argParser(parseTokens).default(128))
    .addOption(new Option('--runs <n>', 'measured runs per side, each on a fresh llama-server, the sides taking turns; the median speed is reported').argParser(parsePositiveInt).default(3))
    .addOption(new Option('--transport <name>', 'the libp2p transport between the peers: tcp (what it takes between nodes that reach each other over TCP) or quic').choices(['tcp', 'quic']).default('tcp'))
    .addOption(new Option('--carrier <name>', 'what carries the ggml-rpc sessions: data-channel (TLS beside libp2p, keys exchanged over it; what nodes use) or libp2p (tunnel streams, the fallback)').choices(['data-channel', 'libp2p']).default('data-channel'))
    .option('--json', 'print one JSON object instead of a summary')
    .action(async (options: BenchClusterOptions) => {
      // Loaded here: libp2p takes a while to import and only this subcommand needs it.
      const { benchCluster } = await import('../bench/cluster-bench.js')
      const result = await benchCluster({ modelPath: options.model, workers: options.workers, tokens: options.tokens, runs: options.runs, transport: options.transport, carrier: options.carrier })
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify(result)}\n`)
        return
      }
      process.stdout.write([
        `carrier        ${result.carrier}`,
        `plan           ${result.plan.map(stage => `${stage.node} ${stage.layers} layers`).join(', ')}`,
        `tunnel         ${result.tokens_per_second.toFixed(1)} tokens/s decode, ${result.prefill_tokens_per_second.toFixed(1)} tokens/s prompt`,
        `--rpc direct   ${result.baseline.tokens_per_second.toFixed(1)} tokens/s decode, ${result.baseline.prefill_tokens_per_second.toFixed(1)} tokens/s prompt`,
        `per token      ${result.ms_per_token.toFixed(2)} ms through the tunnel, ${result.baseline_ms_per_token.toFixed(2)} ms direct (+${(result.ms_per_token - result.baseline_ms_per_token).toFixed(2)} ms)`,
        `load           ${result.load_ms.toFixed(0)} ms through the tunnel, ${result.baseline_load_ms.toFixed(0)} ms direct (llama-server's start until healthy, tensor caches empty)`,
        `ratio          ${result.ratio.toFixed(3)}`,
        `same tokens    ${result.identical_output ? 'yes' : 'NO'}`,
        ''
      ].join('\n'))
    })
}

interface BenchFailoverOptions {
  tokens: number
  json?: boolean
}

/** `mesh bench failover`: a worker SIGKILLed mid-stream; detection, re-plan, reload and resumption times. */
function benchFailoverCommand (): Command {
  return new Command('failover')
    .description('start a coordinator and two workers on 127.0.0.1 serving a 16-layer, 1024-wide f16 synthetic model, SIGKILL one worker during a streaming greedy completion, and time detection, re-plan, reload and the resumed stream')
    .addOption(new Option('--tokens <n>', 'tokens of the streamed completion; the worker is killed after a quarter of them').argParser(parseTokens).default(160))
    .option('--json', 'print {"detect_ms","replan_ms","reload_ms","first_load_ms","resume_ms","identical_output"} instead of a summary')
    .action(async (options: BenchFailoverOptions) => {
      // Loaded here: libp2p takes a while to import and only this subcommand needs it.
      const { benchFailover } = await import('../bench/failover-bench.js')
      const report = await benchFailover({
        tokens: options.tokens,
        killAfterTokens: Math.max(1, Math.floor(options.tokens / 4)),
        progress: options.json === true ? undefined : line => { process.stdout.write(`${line}\n`) }
      })
      const { result, survivorUpload } = report
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify(result)}\n`)
        return
      }
      const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`
      const layers = ({ first, count }: LayerRange): string => count === 0 ? 'no layers' : `layers ${first}-${first + count - 1}`
      process.stdout.write([
        `detect         ${result.detect_ms} ms (SIGKILL -> member dead)`,
        `replan         ${result.replan_ms} ms (dead -> new plan)`,
        `reload         ${result.reload_ms} ms (new plan -> engine ready)`,
        `first load     ${result.first_load_ms} ms (reload/first load ${(result.reload_ms / result.first_load_ms).toFixed(2)})`,
        `resume         ${result.resume_ms} ms (SIGKILL -> next token on the stream, killed after ${report.tokensBeforeKill} of ${report.tokensInAll} tokens)`,
        `same text      ${result.identical_output ? 'yes' : 'NO'}`,
        `surviving worker ${layers(report.survivorLayers.before)} before, ${layers(report.survivorLayers.after)} after; it received ${mib(survivorUpload.firstLoad.setTensorBytes)} as SET_TENSOR at the first load, ${mib(survivorUpload.reload.setTensorBytes)} at the reload (${mib(survivorUpload.reload.setTensorHashBytes)} as SET_TENSOR_HASH); its tensor cache supplied ${mib(survivorUpload.reload.tensorCacheHitBytes)} at the reload`,
        ''
      ].join('\n'))
    })
}

interface BenchApiOptions {
  model: string
  concurrency: number
  requests: number
  tokens: number
  tools?: boolean
  jsonSchema?: boolean
  json?: boolean
}

/** `mesh bench api`: the API's streaming throughput and time to first token against llama-server's own endpoint. */
function benchApiCommand (): Command {
  return new Command('api')
    .description('measure the OpenAI-compatible API over llama-server against the same streamed load sent straight to llama-server\'s socket, in one run')
    .requiredOption('--model <path>', 'GGUF model to run')
    .addOption(new Option('--concurrency <n>', 'concurrent streaming clients, and llama-server\'s parallel slots').argParser(parsePositiveInt).default(16))
    .addOption(new Option('--requests <n>', 'requests per side').argParser(parsePositiveInt).default(64))
    .addOption(new Option('--tokens <n>', 'tokens each request may generate').argParser(parseTokens).default(64))
    .addOption(new Option('--tools', 'chat requests with tools and tool_choice required (a grammar-held tool call) instead of text completions').conflicts('jsonSchema'))
    .option('--json-schema', 'chat requests with a strict response_format json_schema instead of text completions')
    .option('--json', 'print one JSON object instead of a summary')
    .action(async (options: BenchApiOptions) => {
      const { benchApi } = await import('../bench/api-bench.js')
      const load = options.tools === true ? 'tools' : options.jsonSchema === true ? 'json-schema' : 'text'
      const result = await benchApi({ modelPath: options.model, load, concurrency: options.concurrency, requests: options.requests, tokens: options.tokens })
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify(result)}\n`)
        return
      }
      process.stdout.write([
        `load           ${result.load}`,
        `concurrency    ${result.concurrency}`,
        `API            ${result.tokens_per_second.toFixed(1)} tokens/s, time to first token p50 ${result.ttft_p50_ms.toFixed(1)} ms, p99 ${result.ttft_p99_ms.toFixed(1)} ms`,
        `llama-server   ${result.baseline.tokens_per_second.toFixed(1)} tokens/s, time to first token p50 ${result.baseline_ttft_p50_ms.toFixed(1)} ms, p99 ${result.baseline_ttft_p99_ms.toFixed(1)} ms`,
        `ratio          ${result.ratio.toFixed(3)}`,
        `errors         ${result.errors}`,
        ''
      ].join('\n'))
    })
}

interface BenchScaleOptions {
  workers: number
  model: string
  concurrency: number
  tokens: number
  runs: number
  json?: boolean
}

/** `mesh bench scale`: aggregate decode speed on one node, one pipeline and the automatic layout, in one run. */
function benchScaleCommand (): Command {
  return new Command('scale')
    .description('run the same concurrent greedy load on llama-server alone, on a coordinator with N workers as one pipeline, and as the automatic layout (replica groups where the model fits), each worker pinned to a core of its own')
    .requiredOption('--model <path>', 'GGUF model to run')
    .addOption(new Option('--workers <n>', 'workers started on this machine').argParser(parsePositiveInt).default(2))
    .addOption(new Option('--concurrency <n>', 'requests in flight at once, and each llama-server\'s parallel slots').argParser(parsePositiveInt).default(8))
    .addOption(new Option('--tokens <n>', 'tokens each request generates').argParser(parseTokens).default(96))
    .addOption(new Option('--runs <n>', 'measured rounds, in each of which the three setups (all loaded throughout) take turns; the medians are reported').argParser(parsePositiveInt).default(3))
    .option('--json', 'print {"workers","concurrency","single_node","pipeline","auto","ratio","identical_output","runs"} instead of a summary')
    .action(async (options: BenchScaleOptions) => {
      // Loaded here: libp2p takes a while to import and only this subcommand needs it.
      const { benchScale } = await import('../bench/scale-bench.js')
      const result = await benchScale({
        modelPath: options.model,
        workers: options.workers,
        concurrency: options.concurrency,
        tokens: options.tokens,
        runs: options.runs,
        progress: options.json === true ? undefined : line => { process.stdout.write(`${line}\n`) }
      })
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify(result)}\n`)
        return
      }
      process.stdout.write([
        `one node       ${result.single_node.tokens_per_second.toFixed(1)} tokens/s`,
        `pipeline       ${result.pipeline.tokens_per_second.toFixed(1)} tokens/s (${result.pipeline.groups} group)`,
        `auto           ${result.auto.tokens_per_second.toFixed(1)} tokens/s (${result.auto.groups} groups)`,
        `ratio          ${result.ratio.toFixed(3)} (auto / pipeline), ${(result.auto.tokens_per_second / result.single_node.tokens_per_second).toFixed(3)} (auto / one node), medians of ${result.runs.auto.length} run(s)`,
        `same tokens    ${result.identical_output ? 'yes' : 'NO'}`,
        ''
      ].join('\n'))
    })
}

interface BenchTunnelOptions {
  samples: number
  bulkMb: number
  transport: 'tcp' | 'quic'
  carrier: TunnelCarrier
  json?: boolean
}

/** `mesh bench tunnel`: round trips and bulk rate of the ggml-rpc tunnel against a plain TCP relay, in one run. */
function benchTunnelCommand (): Command {
  return new Command('tunnel')
    .description('measure the ggml-rpc tunnel between two libp2p peers on 127.0.0.1 against a plain node:net relay to the same rpc-server stand-in and against a bare TLS pipe of two hops: round trips of a decode step\'s messages (11 KB out, 4 KB back) after a 10 ms pause, and SET_TENSOR bulk transfer, the three taking turns')
    .addOption(new Option('--samples <n>', 'round trips per side; the median is reported').argParser(parsePositiveInt).default(300))
    .addOption(new Option('--bulk-mb <n>', 'MiB of tensor data per bulk run (three runs per side, the median rate is reported)').argParser(parsePositiveInt).default(64))
    .addOption(new Option('--transport <name>', 'the libp2p transport between the peers: tcp (what it takes between nodes that reach each other over TCP) or quic').choices(['tcp', 'quic']).default('tcp'))
    .addOption(new Option('--carrier <name>', 'what carries the ggml-rpc sessions: data-channel (TLS beside libp2p, keys exchanged over it; what nodes use) or libp2p (tunnel streams, the fallback)').choices(['data-channel', 'libp2p']).default('data-channel'))
    .option('--json', 'print {"tunnel_rtt_p50_us","relay_rtt_p50_us","ratio","bulk_mb_per_s","relay_bulk_mb_per_s","transport","carrier","tls_pipe_rtt_p50_us","tls_pipe_bulk_mb_per_s"} instead of a summary')
    .action(async (options: BenchTunnelOptions) => {
      // Loaded here: libp2p takes a while to import and only this subcommand needs it.
      const { benchTunnel } = await import('../bench/tunnel-bench.js')
      const result = await benchTunnel({ samples: options.samples, bulkBytes: options.bulkMb * 1024 * 1024, bulkRuns: 3, transport: options.transport, carrier: options.carrier })
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify(result)}\n`)
        return
      }
      process.stdout.write([
        `carrier        ${result.carrier} (libp2p over ${result.transport})`,
        `round trip     ${result.tunnel_rtt_p50_us} us through the tunnel, ${result.relay_rtt_p50_us} us through a plain relay (median; ratio ${result.ratio.toFixed(2)})`,
        `bulk           ${result.bulk_mb_per_s.toFixed(0)} MB/s through the tunnel, ${result.relay_bulk_mb_per_s.toFixed(0)} MB/s through a plain relay`,
        `bare TLS pipe  ${result.tls_pipe_rtt_p50_us} us, ${result.tls_pipe_bulk_mb_per_s.toFixed(0)} MB/s (two forwarding hops and Node's TLS, no inspection: the floor of a tunnel of this shape on Node's TLS sockets)`,
        ''
      ].join('\n'))
    })
}

/** `mesh bench`: performance measurements. */
export function benchCommand (): Command {
  return new Command('bench')
    .description('measure performance')
    .addCommand(benchLocalCommand())
    .addCommand(benchClusterCommand())
    .addCommand(benchFailoverCommand())
    .addCommand(benchApiCommand())
    .addCommand(benchScaleCommand())
    .addCommand(benchTunnelCommand())
}
