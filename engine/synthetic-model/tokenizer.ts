import { type GgufValue, bool, str, strArray, i32Array, u32 } from '../gguf/index.js'
import { BYTE_CHARACTERS, learnMerges } from './byte-level-bpe.js'
import type { SyntheticByteTokens, SyntheticChatTemplate } from './options.js'

// ASCII English text the merges are learned from. Any text works (every ASCII byte has its own
// token, so ASCII text round-trips); prose just makes common words single tokens, as in real models.
const CORPUS = `
The mesh turns the machines on a local network into one private language model server.
Every machine runs the same command line tool, and the nodes find each other on the network.
When a request comes in, the coordinator splits the model into layers and sends each part to
the worker that has the memory for it. The workers compute their layers and pass the results on,
so a model that is too large for one computer can still answer the question.
It is not magic: the network has to be fast enough, and the slowest machine sets the pace.
This is why the scheduler measures each node before it plans where the layers should go.
You can ask the server anything you would ask another model, and the answer comes back as a
stream of tokens. What do you think about that? I think that it is a good idea, and I would
like to try it with the computers that are in the office, the school or the house.
There are many questions: how much memory does each one have, which of them are free, and
what happens when one of them is turned off? The answers are in the status of the mesh.
Numbers such as 1, 2, 3, 10, 42 and 2024 are split into digits; words like "the", "and",
"of", "to", "in", "is", "it", "that", "for", "with", "on", "as", "was", "at", "by", "be"
become single tokens. Punctuation (commas, periods, quotes!) stays as it is.
Hello, world! Hello there. How are you today? We're fine, thanks; they've said it's done.
`

/** Control tokens, appended after the byte and merge tokens. */
export const SPECIAL_TOKENS = {
  bos: '<|begin_of_text|>',
  eos: '<|endoftext|>',
  imStart: '<|im_start|>',
  imEnd: '<|im_end|>'
} as const

/** A ChatML template, so that llama-server's chat completions work on synthetic models. */
export const CHATML_TEMPLATE = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

/**
 * ChatML with tools in the shape of the Hermes and Qwen 2.5 templates: the tools as JSON lines in
 * the system message, calls as `<tool_call>` JSON, results as `<tool_response>` user turns. Without
 * tools it renders a conversation exactly as CHATML_TEMPLATE does.
 */
export const HERMES_TOOLS_TEMPLATE = [
  "{%- if tools %}",
  "{{- '<|im_start|>system\\n' }}",
  "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}",
  "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}",
  "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}",
  "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\\n</tool_call><|im_end|>\\n' }}",
  "{%- elif messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}",
  "{%- endif %}",
  "{%- for message in messages %}",
  "{%- if message['role'] == 'system' and loop.first %}",
  "{%- elif message['role'] == 'assistant' and message['tool_calls'] %}",
  "{{- '<|im_start|>assistant' }}{%- if message['content'] %}{{- '\\n' + message['content'] }}{%- endif %}",
  "{%- for tool_call in message['tool_calls'] %}",
  "{{- '\\n<tool_call>\\n{\"name\": \"' + tool_call['function']['name'] + '\", \"arguments\": ' }}",
  "{%- if tool_call['function']['arguments'] is string %}{{- tool_call['function']['arguments'] }}{%- else %}{{- tool_call['function']['arguments'] | tojson }}{%- endif %}",
  "{{- '}\\n</tool_call>' }}",
  "{%- endfor %}",
  "{{- '<|im_end|>\\n' }}",
  "{%- elif message['role'] == 'tool' %}",
  "{{- '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' }}",
  "{%- else %}",
  "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}",
  "{%- endif %}",
  "{%- endfor %}",
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
].join('\n')

/** The chat templates a synthetic model can carry. */
export const SYNTHETIC_CHAT_TEMPLATES = { chatml: CHATML_TEMPLATE, 'hermes-tools': HERMES_TOOLS_TEMPLATE } as const

const MAX_MERGES = 400

/** llama.cpp's token types (llama.h `enum llama_token_type`). */
const NORMAL_TOKEN = 1
const CONTROL_TOKEN = 3

/** A byte-level BPE vocabulary: token texts (index = id), their types, and the merges. */
export interface SyntheticVocabulary {
  tokens: string[]
  tokenTypes: number[]
  merges: string[]
  bosId: number
  eosId: number
}

const cached = new Map<SyntheticByteTokens, SyntheticVocabulary>()

/**
 * The vocabulary of synthetic models: byte tokens, merged tokens, then control tokens. By default
 * only the 128 ASCII bytes get tokens, so that random weights cannot emit lone bytes >= 0x80
 * (invalid UTF-8); ASCII text still round-trips, other characters have no token and are dropped
 * by the tokenizer. With 'all', every byte has a token, as in real byte-level vocabularies.
 */
export function syntheticVocabulary (byteTokens: SyntheticByteTokens = 'ascii'): SyntheticVocabulary {
  const known = cached.get(byteTokens)
  if (known !== undefined) return known
  const merges = learnMerges(CORPUS, MAX_MERGES)
  const bytes = byteTokens === 'all' ? BYTE_CHARACTERS : BYTE_CHARACTERS.slice(0, 128)
  // Two merges can build the same text ("a bc" and "ab c"); llama.cpp needs unique token texts.
  const texts = new Set([...bytes, ...merges.map(merge => merge.replace(' ', ''))])
  const normal = [...texts]
  const tokens = [...normal, ...Object.values(SPECIAL_TOKENS)]
  const tokenTypes = tokens.map((_, id) => id < normal.length ? NORMAL_TOKEN : CONTROL_TOKEN)
  const vocabulary = { tokens, tokenTypes, merges, bosId: tokens.indexOf(SPECIAL_TOKENS.bos), eosId: tokens.indexOf(SPECIAL_TOKENS.eos) }
  cached.set(byteTokens, vocabulary)
  return vocabulary
}

/** The `tokenizer.*` metadata of a synthetic model. */
export function tokenizerMetadata (vocabulary: SyntheticVocabulary, chatTemplate: SyntheticChatTemplate = 'chatml'): Array<[string, GgufValue]> {
  return [
    ['tokenizer.ggml.model', str('gpt2')],
    // "qwen2" is a byte-level pre-tokenizer that keeps spaces before punctuation on detokenisation
    // ("default" would turn "a ," into "a,"), so text round-trips exactly.
    ['tokenizer.ggml.pre', str('qwen2')],
    ['tokenizer.ggml.tokens', strArray(vocabulary.tokens)],
    ['tokenizer.ggml.token_type', i32Array(vocabulary.tokenTypes)],
    ['tokenizer.ggml.merges', strArray(vocabulary.merges)],
    ['tokenizer.ggml.bos_token_id', u32(vocabulary.bosId)],
    ['tokenizer.ggml.eos_token_id', u32(vocabulary.eosId)],
    ['tokenizer.ggml.add_bos_token', bool(true)],
    ['tokenizer.ggml.add_eos_token', bool(false)],
    ['tokenizer.chat_template', str(SYNTHETIC_CHAT_TEMPLATES[chatTemplate])]
  ]
}
