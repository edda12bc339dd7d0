import { Command, InvalidArgumentError, Option } from 'commander'
import { loadLocalEngine } from '../../engine/local-engine.js'
import { ensureDemoModel } from '../../engine/synthetic-model/demo-model.js'
import { parseNonNegativeInt, parsePositiveInt } from '../cli-parsers.js'

interface GenerateCommandOptions {
  model?: string
  prompt: string
  tokens: number
  temperature: number
  seed?: number
  threads?: number
}

function parseTemperature (value: string): number {
  const t = Number(value)
  if (value.trim() === '' || !Number.isFinite(t) || t < 0 || t > 2) throw new InvalidArgumentError(`expected a temperature from 0 to 2, got "${value}".`)
  return t
}

/** `mesh generate`: completes one prompt with the local engine and streams the text to stdout. */
export function generateCommand (): Command {
  return new Command('generate')
    .description('complete one prompt with the local engine (node-llama-cpp, in this process), streaming the text to stdout')
    .option('--model <path>', 'GGUF model to run (default: the synthetic demo model, written to the cache on first use)')
    .option('--prompt <text>', 'text to continue', 'The mesh of machines said')
    .addOption(new Option('--tokens <n>', 'tokens to generate at most').argParser(parsePositiveInt).default(48))
    .addOption(new Option('--temperature <t>', 'sampling temperature; 0 is greedy and repeatable').argParser(parseTemperature).default(0))
    .addOption(new Option('--seed <n>', 'sampler seed, for repeatable sampling').argParser(parseNonNegativeInt))
    .addOption(new Option('--threads <n>', 'compute threads (default: what the CPU budget allows)').argParser(parsePositiveInt))
    .action(async (options: GenerateCommandOptions) => {
      const modelPath = options.model ?? await ensureDemoModel()
      const engine = await loadLocalEngine({ modelPath, threads: options.threads })
      const controller = new AbortController()
      const abort = (): void => { controller.abort() }
      process.once('SIGINT', abort)
      try {
        process.stderr.write(`model ${modelPath}${options.model == null ? ' (synthetic demo model with random weights: expect gibberish)' : ''}, ${engine.threads} threads\n`)
        const sampling = options.temperature > 0 ? { temperature: options.temperature, seed: options.seed } : undefined
        const started = performance.now()
        let tokens = 0
        const generation = engine.generate(options.prompt, { maxTokens: options.tokens, sampling, signal: controller.signal })
        for await (const piece of generation) {
          tokens++
          process.stdout.write(piece.text)
        }
        const seconds = (performance.now() - started) / 1000
        process.stdout.write('\n')
        process.stderr.write(`${tokens} tokens in ${seconds.toFixed(2)} s (${(tokens / seconds).toFixed(1)} tokens/s, prompt included)\n`)
      } catch (err) {
        if (!controller.signal.aborted) throw err
        process.exitCode = 130
      } finally {
        process.off('SIGINT', abort)
        await engine.dispose()
      }
    })
}
