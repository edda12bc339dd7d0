import { GgufValueType, readGgufInfo, type GgufInfo } from './gguf/index.js'

/** What the engines need to know about a model file before loading it. */
export interface ModelFileSummary {
  /** context length the model was trained with, when the file says */
  trainedContext: number | undefined
  /** number of tokens in the vocabulary, when the file lists them */
  vocabularySize: number | undefined
}

/** Context length the engines use unless told otherwise: the trained one, at most this. */
export const DEFAULT_MAX_CONTEXT = 4096

/**
 * Validates a model file (missing, truncated or non-GGUF files throw a GgufError subclass with a
 * message naming the file) and reads the facts the engines need. llama.cpp itself only says
 * "failed to load model" for all of these.
 */
export async function inspectModelFile (path: string): Promise<ModelFileSummary> {
  return summarize(await readGgufInfo(path))
}

function summarize (info: GgufInfo): ModelFileSummary {
  const architecture = info.metadata.get('general.architecture')
  const context = architecture?.type === GgufValueType.STRING ? info.metadata.get(`${architecture.value}.context_length`) : undefined
  const tokens = info.metadata.get('tokenizer.ggml.tokens')
  return {
    trainedContext: typeof context?.value === 'number' ? context.value : undefined,
    vocabularySize: tokens?.type === GgufValueType.ARRAY ? tokens.value.length : undefined
  }
}

/** The context length to run a model with when none is asked for. */
export function defaultContextSize (facts: ModelFileSummary): number {
  return Math.min(facts.trainedContext ?? DEFAULT_MAX_CONTEXT, DEFAULT_MAX_CONTEXT)
}
