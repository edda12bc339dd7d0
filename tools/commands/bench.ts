import { Command, InvalidArgumentError, Option } from 'commander'
import { benchLocal } from '../../engine/benchmark.js'
import { parsePositiveInt } from '../cli-parsers.js'

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
  json?: boolean
}

/** `mesh bench cluster`: llama-server through the libp2p tunnel against `--rpc` pointed at the same rpc-servers. */
function benchClusterCommand (): Command {
  return new Command('cluster')
    .description('measure llama-server split over rpc-servers through the libp2p tunnel against --rpc pointed at them directly: same plan, processes and prompt')
    .requiredOption('--model <path>', 'GGUF model to run')
    .addOption(new Option('--workers <n>', 'rpc-servers (workers) to split the model over').argParser(parsePositiveInt).default(2))
    .addOption(new Option('--tokens <n>', 'tokens to generate per measured run').argParser(parseTokens).default(128))
    .addOption(new Option('--runs <n>', 'measured runs per side; the median speed is reported').argParser(parsePositiveInt).default(3))
    .option('--json', 'print one JSON object instead of a summary')
    .action(async (options: BenchClusterOptions) => {
      // Loaded here: libp2p takes a while to import and only this subcommand needs it.
      const { benchCluster } = await import('../cluster-bench.js')
      const result = await benchCluster({ modelPath: options.model, workers: options.workers, tokens: options.tokens, runs: options.runs })
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify(result)}\n`)
        return
      }
      process.stdout.write([
        `plan           ${result.plan.map(stage => `${stage.node} ${stage.layers} layers`).join(', ')}`,
        `tunnel         ${result.tokens_per_second.toFixed(1)} tokens/s decode, ${result.prefill_tokens_per_second.toFixed(1)} tokens/s prompt`,
        `--rpc direct   ${result.baseline.tokens_per_second.toFixed(1)} tokens/s decode, ${result.baseline.prefill_tokens_per_second.toFixed(1)} tokens/s prompt`,
        `ratio          ${result.ratio.toFixed(3)}`,
        `same tokens    ${result.identical_output ? 'yes' : 'NO'}`,
        ''
      ].join('\n'))
    })
}

/** `mesh bench`: performance measurements; later issues add api and failover. */
export function benchCommand (): Command {
  return new Command('bench')
    .description('measure performance')
    .addCommand(benchLocalCommand())
    .addCommand(benchClusterCommand())
}
