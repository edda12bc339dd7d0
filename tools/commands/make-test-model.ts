import { resolve } from 'node:path'
import cliProgress from 'cli-progress'
import { Command, Option } from 'commander'
import { writeGgufFile } from '../../engine/gguf/index.js'
import { DEFAULT_SYNTHETIC_MODEL_OPTIONS, SYNTHETIC_BYTE_TOKENS, SYNTHETIC_CHAT_TEMPLATE_NAMES, SYNTHETIC_WEIGHT_TYPES, syntheticModelContent, syntheticVocabulary, type SyntheticModelOptions } from '../../engine/synthetic-model/index.js'
import { formatBytes } from '../../scheduler/index.js'
import { parseNonNegativeInt, parsePositiveInt } from '../cli-parsers.js'

interface MakeTestModelOptions extends SyntheticModelOptions {
  out: string
  json?: boolean
}

/** Files at least this big get a progress bar (on a terminal). */
const PROGRESS_BAR_MIN_BYTES = 64 * 1024 * 1024

/** `mesh make-test-model`: writes a synthetic llama GGUF model with random weights from a seed. */
export function makeTestModelCommand (): Command {
  const defaults = DEFAULT_SYNTHETIC_MODEL_OPTIONS
  const count = (flags: string, description: string, value: number): Option =>
    new Option(flags, description).argParser(parsePositiveInt).default(value)
  return new Command('make-test-model')
    .description('write a synthetic llama GGUF model with random weights and a real byte-level BPE tokenizer, for tests and benchmarks (no network, no llama.cpp build needed)')
    .requiredOption('--out <path>', 'file to write (written to a temporary file first, renamed when complete)')
    .addOption(count('--layers <n>', 'transformer blocks', defaults.layers))
    .addOption(count('--embd <n>', 'embedding size', defaults.embd))
    .addOption(count('--ff <n>', 'feed-forward size', defaults.ff))
    .addOption(count('--heads <n>', 'attention heads (must divide --embd)', defaults.heads))
    .addOption(count('--kv-heads <n>', 'key/value heads (must divide --heads)', defaults.kvHeads))
    .addOption(count('--ctx <n>', 'training context length', defaults.ctx))
    .addOption(new Option('--type <type>', 'storage type of the 2-D weights (norms stay f32); q8_0 needs --embd and --ff divisible by 32').choices(SYNTHETIC_WEIGHT_TYPES).default(defaults.type))
    .addOption(new Option('--seed <n>', 'seed of the random weights: the same options and seed give a byte-identical file').argParser(parseNonNegativeInt).default(defaults.seed))
    .addOption(new Option('--byte-tokens <which>', 'bytes with a token of their own: ascii (output stays valid UTF-8) or all (lone bytes of multi-byte characters, as real vocabularies emit)').choices(SYNTHETIC_BYTE_TOKENS).default('ascii'))
    .addOption(new Option('--chat-template <name>', 'its chat template: chatml, or hermes-tools (ChatML with tool calls in the Hermes/Qwen 2.5 shape)').choices(SYNTHETIC_CHAT_TEMPLATE_NAMES).default('chatml'))
    .option('--json', 'print {path, bytes, seconds, layers, embd, ff, heads, kvHeads, ctx, type, seed, byteTokens, chatTemplate, vocabSize} as JSON')
    .action(async (options: MakeTestModelOptions) => {
      const path = resolve(options.out)
      const { layers, embd, ff, heads, kvHeads, ctx, type, seed, byteTokens, chatTemplate } = options
      const parameters = { layers, embd, ff, heads, kvHeads, ctx, type, seed, byteTokens, chatTemplate }
      const content = syntheticModelContent(parameters)

      const controller = new AbortController()
      const abort = (): void => { controller.abort() }
      process.once('SIGINT', abort)
      process.once('SIGTERM', abort)
      const progress = progressBar(options.json !== true)
      const started = performance.now()
      try {
        const { bytes } = await writeGgufFile(path, content, { signal: controller.signal, onProgress: progress.update })
        const seconds = Math.round(performance.now() - started) / 1000
        progress.stop()
        if (options.json === true) {
          process.stdout.write(`${JSON.stringify({ path, bytes, seconds, ...parameters, vocabSize: syntheticVocabulary(byteTokens).tokens.length })}\n`)
        } else {
          process.stdout.write(`wrote ${path}: ${formatBytes(bytes)}, ${layers} layers, embd ${embd}, ff ${ff}, ${heads}/${kvHeads} heads, ${type}, seed ${seed} (${seconds} s)\n`)
        }
      } finally {
        progress.stop()
        process.off('SIGINT', abort)
        process.off('SIGTERM', abort)
      }
    })
}

// A bar for big files on a terminal; nothing otherwise (logs and pipes stay clean).
function progressBar (wanted: boolean): { update: (written: number, total: number) => void, stop: () => void } {
  if (!wanted || process.stderr.isTTY !== true) return { update: () => {}, stop: () => {} }
  const bar = new cliProgress.SingleBar({
    format: 'writing model [{bar}] {percentage}% | {eta_formatted} left',
    stream: process.stderr,
    hideCursor: true
  }, cliProgress.Presets.shades_classic)
  let started = false
  return {
    update: (written, total) => {
      if (total < PROGRESS_BAR_MIN_BYTES) return
      if (!started) bar.start(total, 0)
      started = true
      bar.update(written)
    },
    stop: () => {
      if (started) bar.stop()
      started = false
    }
  }
}
