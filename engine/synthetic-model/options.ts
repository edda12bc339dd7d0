import { InvalidModelOptionsError } from './errors.js'

/** Storage types a synthetic model's 2-D weights can use. */
export const SYNTHETIC_WEIGHT_TYPES = ['f32', 'f16', 'q8_0'] as const

/** Storage type of a synthetic model's 2-D weights; norm vectors are always f32. */
export type SyntheticWeightType = typeof SYNTHETIC_WEIGHT_TYPES[number]

/** Which bytes get a token of their own: ASCII only (text stays valid UTF-8), or all 256 as in real byte-level vocabularies. */
export const SYNTHETIC_BYTE_TOKENS = ['ascii', 'all'] as const

/** Which bytes of a synthetic model's vocabulary have their own token. */
export type SyntheticByteTokens = typeof SYNTHETIC_BYTE_TOKENS[number]

/** Chat templates a synthetic model can carry: plain ChatML, or ChatML with tools (Hermes/Qwen shape). */
export const SYNTHETIC_CHAT_TEMPLATE_NAMES = ['chatml', 'hermes-tools'] as const

/** Which chat template a synthetic model carries. */
export type SyntheticChatTemplate = typeof SYNTHETIC_CHAT_TEMPLATE_NAMES[number]

/** The shape and contents of a synthetic llama model. */
export interface SyntheticModelOptions {
  /** transformer blocks */
  layers: number
  /** embedding (hidden) size */
  embd: number
  /** feed-forward size */
  ff: number
  /** attention heads */
  heads: number
  /** key/value heads (grouped-query attention when fewer than heads) */
  kvHeads: number
  /** training context length written to the metadata */
  ctx: number
  /** storage type of the 2-D weights */
  type: SyntheticWeightType
  /** seed of the random weights: same options and seed give the same bytes */
  seed: number
  /**
   * 'all' gives every byte a token, so that random weights emit lone bytes of multi-byte
   * characters (invalid UTF-8) as real models can (default 'ascii')
   */
  byteTokens?: SyntheticByteTokens
  /** its chat template (default 'chatml') */
  chatTemplate?: SyntheticChatTemplate
}

/** Small and fast defaults, meant for tests. */
export const DEFAULT_SYNTHETIC_MODEL_OPTIONS: Readonly<SyntheticModelOptions> = {
  layers: 4,
  embd: 256,
  ff: 512,
  heads: 4,
  kvHeads: 4,
  ctx: 512,
  type: 'f16',
  seed: 1
}

/** llama.cpp's LLAMA_MAX_LAYERS. */
const MAX_LAYERS = 512

/** q8_0 stores rows in blocks of this many values. */
const Q8_0_BLOCK = 32

/** Checks that the options describe a llama model llama.cpp can load; throws InvalidModelOptionsError otherwise. */
export function checkSyntheticModelOptions (options: SyntheticModelOptions): SyntheticModelOptions {
  const { layers, embd, ff, heads, kvHeads, ctx, type, seed } = options
  const counts = { layers, embd, ff, heads, 'kv-heads': kvHeads, ctx }
  for (const [flag, value] of Object.entries(counts)) {
    if (!Number.isSafeInteger(value) || value < 1) throw new InvalidModelOptionsError(`--${flag} must be a positive whole number, not ${value}`)
  }
  if (!Number.isSafeInteger(seed) || seed < 0 || seed > 0xffffffff) throw new InvalidModelOptionsError(`--seed must be a whole number from 0 to 4294967295, not ${seed}`)
  if (!(SYNTHETIC_WEIGHT_TYPES as readonly string[]).includes(type)) {
    throw new InvalidModelOptionsError(`--type ${type} is not supported; use one of ${SYNTHETIC_WEIGHT_TYPES.join(', ')}`)
  }
  if (options.byteTokens !== undefined && !(SYNTHETIC_BYTE_TOKENS as readonly string[]).includes(options.byteTokens)) {
    throw new InvalidModelOptionsError(`--byte-tokens ${options.byteTokens} is not supported; use one of ${SYNTHETIC_BYTE_TOKENS.join(', ')}`)
  }
  if (options.chatTemplate !== undefined && !(SYNTHETIC_CHAT_TEMPLATE_NAMES as readonly string[]).includes(options.chatTemplate)) {
    throw new InvalidModelOptionsError(`--chat-template ${options.chatTemplate} is not supported; use one of ${SYNTHETIC_CHAT_TEMPLATE_NAMES.join(', ')}`)
  }
  if (layers > MAX_LAYERS) throw new InvalidModelOptionsError(`--layers ${layers} is more than llama.cpp's limit of ${MAX_LAYERS}`)
  if (embd % heads !== 0) throw new InvalidModelOptionsError(`--heads ${heads} does not divide --embd ${embd}; choose a head count that divides the embedding size`)
  if ((embd / heads) % 2 !== 0) throw new InvalidModelOptionsError(`--embd ${embd} / --heads ${heads} gives an odd head size (${embd / heads}); rotary embeddings need an even one`)
  if (heads % kvHeads !== 0) throw new InvalidModelOptionsError(`--kv-heads ${kvHeads} does not divide --heads ${heads}; choose a key/value head count that divides the head count`)
  if (type === 'q8_0' && (embd % Q8_0_BLOCK !== 0 || ff % Q8_0_BLOCK !== 0)) {
    throw new InvalidModelOptionsError(`--type q8_0 needs --embd and --ff to be multiples of ${Q8_0_BLOCK} (got ${embd} and ${ff}); change them or use --type f16`)
  }
  return options
}
