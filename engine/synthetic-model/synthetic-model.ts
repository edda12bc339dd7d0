import { GGML_QUANTIZATION_VERSION, GgmlType, LlamaFileType, type GgufContent, type GgufTensorSource, type GgufValue, f32, str, u32 } from '../gguf/index.js'
import { checkSyntheticModelOptions, type SyntheticModelOptions, type SyntheticWeightType } from './options.js'
import { constantValues, uniformValues } from './random-weights.js'
import { syntheticVocabulary, tokenizerMetadata } from './tokenizer.js'

const WEIGHT_TYPES: Record<SyntheticWeightType, { tensor: GgmlType, file: LlamaFileType }> = {
  f32: { tensor: GgmlType.F32, file: LlamaFileType.ALL_F32 },
  f16: { tensor: GgmlType.F16, file: LlamaFileType.MOSTLY_F16 },
  q8_0: { tensor: GgmlType.Q8_0, file: LlamaFileType.MOSTLY_Q8_0 }
}

const RMS_NORM_EPSILON = 1e-5
const ROPE_FREQ_BASE = 10000

/**
 * The GGUF content of a llama-architecture model with random weights: metadata, a byte-level
 * BPE tokenizer and lazily generated tensors. Throws InvalidModelOptionsError for impossible options.
 */
export function syntheticModelContent (options: SyntheticModelOptions): GgufContent {
  const { layers, embd, ff, heads, kvHeads, ctx, type, seed } = checkSyntheticModelOptions(options)
  const vocabulary = syntheticVocabulary(options.byteTokens)
  const vocab = vocabulary.tokens.length
  const kvDim = (embd / heads) * kvHeads
  const weightType = WEIGHT_TYPES[type].tensor

  // Weights have a standard deviation of 1/sqrt(row length), so activations keep their scale
  // through each matrix product and greedy decoding gives varied tokens instead of one repeated.
  const matrix = (name: string, rowLength: number, rows: number): GgufTensorSource =>
    ({ name, type: weightType, dims: [rowLength, rows], values: uniformValues(seed, name, Math.sqrt(3 / rowLength)) })
  const norm = (name: string): GgufTensorSource => ({ name, type: GgmlType.F32, dims: [embd], values: constantValues(1) })

  const tensors: GgufTensorSource[] = [
    { name: 'token_embd.weight', type: weightType, dims: [embd, vocab], values: uniformValues(seed, 'token_embd.weight', 1) },
    norm('output_norm.weight'),
    matrix('output.weight', embd, vocab)
  ]
  for (let layer = 0; layer < layers; layer++) {
    const block = `blk.${layer}`
    tensors.push(
      norm(`${block}.attn_norm.weight`),
      matrix(`${block}.attn_q.weight`, embd, embd),
      matrix(`${block}.attn_k.weight`, embd, kvDim),
      matrix(`${block}.attn_v.weight`, embd, kvDim),
      matrix(`${block}.attn_output.weight`, embd, embd),
      norm(`${block}.ffn_norm.weight`),
      matrix(`${block}.ffn_gate.weight`, embd, ff),
      matrix(`${block}.ffn_up.weight`, embd, ff),
      matrix(`${block}.ffn_down.weight`, ff, embd)
    )
  }

  const metadata = new Map<string, GgufValue>([
    ['general.architecture', str('llama')],
    ['general.name', str(`llmesh synthetic llama ${layers}x${embd} ${type} seed ${seed}`)],
    ['general.alignment', u32(32)],
    ['general.file_type', u32(WEIGHT_TYPES[type].file)],
    ['general.quantization_version', u32(GGML_QUANTIZATION_VERSION)],
    ['llama.vocab_size', u32(vocab)],
    ['llama.context_length', u32(ctx)],
    ['llama.embedding_length', u32(embd)],
    ['llama.block_count', u32(layers)],
    ['llama.feed_forward_length', u32(ff)],
    ['llama.rope.dimension_count', u32(embd / heads)],
    ['llama.rope.freq_base', f32(ROPE_FREQ_BASE)],
    ['llama.attention.head_count', u32(heads)],
    ['llama.attention.head_count_kv', u32(kvHeads)],
    ['llama.attention.layer_norm_rms_epsilon', f32(RMS_NORM_EPSILON)],
    ...tokenizerMetadata(vocabulary, options.chatTemplate)
  ])
  return { metadata, tensors }
}
