import { GGML_QUANTIZATION_VERSION, GgmlType, LlamaFileType, type GgufContent, type GgufTensorSource, type GgufValue, f32, str, u32 } from '../gguf/index.js'
import { checkSyntheticModelOptions, type SyntheticModelOptions } from './options.js'
import { constantValues, uniformValues } from './random-weights.js'
import { syntheticVocabulary, tokenizerMetadata } from './tokenizer.js'

const LAYER_NORM_EPSILON = 1e-5

/**
 * The GGUF content of a phi2-architecture model with random f16 weights: layer norms and linear
 * layers with biases, and an output head that has biases too (`output_norm.bias`, `output.bias`),
 * unlike llama's. Tests use it to check that the coordinator keeps a head whatever it holds.
 * `kvHeads` and `type` of the options are not used: phi2 has one fused QKV projection, in f16.
 */
export function syntheticPhi2Content (options: SyntheticModelOptions): GgufContent {
  const { layers, embd, ff, heads, ctx, seed } = checkSyntheticModelOptions(options)
  const vocabulary = syntheticVocabulary()
  const vocab = vocabulary.tokens.length

  const matrix = (name: string, rowLength: number, rows: number): GgufTensorSource =>
    ({ name, type: GgmlType.F16, dims: [rowLength, rows], values: uniformValues(seed, name, Math.sqrt(3 / rowLength)) })
  // Small random biases, so that a bias left out or applied twice changes the output.
  const bias = (name: string, length: number): GgufTensorSource => ({ name, type: GgmlType.F32, dims: [length], values: uniformValues(seed, name, 0.05) })
  const norm = (name: string): GgufTensorSource[] => [
    { name: `${name}.weight`, type: GgmlType.F32, dims: [embd], values: constantValues(1) },
    bias(`${name}.bias`, embd)
  ]

  const tensors: GgufTensorSource[] = [
    { name: 'token_embd.weight', type: GgmlType.F16, dims: [embd, vocab], values: uniformValues(seed, 'token_embd.weight', 1) },
    ...norm('output_norm'),
    matrix('output.weight', embd, vocab),
    bias('output.bias', vocab)
  ]
  for (let layer = 0; layer < layers; layer++) {
    const block = `blk.${layer}`
    tensors.push(
      ...norm(`${block}.attn_norm`),
      matrix(`${block}.attn_qkv.weight`, embd, 3 * embd),
      bias(`${block}.attn_qkv.bias`, 3 * embd),
      matrix(`${block}.attn_output.weight`, embd, embd),
      bias(`${block}.attn_output.bias`, embd),
      matrix(`${block}.ffn_up.weight`, embd, ff),
      bias(`${block}.ffn_up.bias`, ff),
      matrix(`${block}.ffn_down.weight`, ff, embd),
      bias(`${block}.ffn_down.bias`, embd)
    )
  }

  const metadata = new Map<string, GgufValue>([
    ['general.architecture', str('phi2')],
    ['general.name', str(`llmesh synthetic phi2 ${layers}x${embd} seed ${seed}`)],
    ['general.alignment', u32(32)],
    ['general.file_type', u32(LlamaFileType.MOSTLY_F16)],
    ['general.quantization_version', u32(GGML_QUANTIZATION_VERSION)],
    ['phi2.context_length', u32(ctx)],
    ['phi2.embedding_length', u32(embd)],
    ['phi2.block_count', u32(layers)],
    ['phi2.feed_forward_length', u32(ff)],
    ['phi2.rope.dimension_count', u32(embd / heads)],
    ['phi2.attention.head_count', u32(heads)],
    ['phi2.attention.head_count_kv', u32(heads)],
    ['phi2.attention.layer_norm_epsilon', f32(LAYER_NORM_EPSILON)],
    ...tokenizerMetadata(vocabulary)
  ])
  return { metadata, tensors }
}
