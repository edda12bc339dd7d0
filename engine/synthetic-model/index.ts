// Public surface: synthetic llama models for tests and benchmarks.
export { InvalidModelOptionsError } from './errors.js'
export { DEFAULT_SYNTHETIC_MODEL_OPTIONS, SYNTHETIC_BYTE_TOKENS, SYNTHETIC_CHAT_TEMPLATE_NAMES, SYNTHETIC_WEIGHT_TYPES, checkSyntheticModelOptions, type SyntheticByteTokens, type SyntheticChatTemplate, type SyntheticModelOptions, type SyntheticWeightType } from './options.js'
export { syntheticModelContent } from './synthetic-model.js'
export { SPECIAL_TOKENS, syntheticVocabulary } from './tokenizer.js'
