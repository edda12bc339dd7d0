/**
 * GPT-2's byte-level BPE, as llama.cpp implements it for `tokenizer.ggml.model = "gpt2"`:
 * text is split by a pre-tokenizer regex, each piece's UTF-8 bytes become printable
 * characters (bytes_to_unicode), and merges join adjacent symbols.
 */

/** The printable character GPT-2 uses for each byte value (index = byte). */
export const BYTE_CHARACTERS: readonly string[] = (() => {
  const printable = (from: string, to: string): number[] => {
    const codes: number[] = []
    for (let code = from.charCodeAt(0); code <= to.charCodeAt(0); code++) codes.push(code)
    return codes
  }
  const direct = new Set([...printable('!', '~'), ...printable('¡', '¬'), ...printable('®', 'ÿ')])
  const characters: string[] = []
  let shifted = 0
  for (let byte = 0; byte < 256; byte++) {
    characters.push(String.fromCodePoint(direct.has(byte) ? byte : 256 + shifted++))
  }
  return characters
})()

/** The pre-tokenizer llama.cpp applies for `tokenizer.ggml.pre = "qwen2"`, written as a JS regex. */
export const QWEN2_PRETOKENIZER = /(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu

/** Splits text like the pre-tokenizer and maps each piece's bytes to GPT-2 characters. */
export function byteEncodedPieces (text: string): string[] {
  return (text.match(QWEN2_PRETOKENIZER) ?? []).map(piece => [...Buffer.from(piece, 'utf8')].map(byte => BYTE_CHARACTERS[byte]).join(''))
}

/**
 * Learns up to `maxMerges` BPE merges from a text: repeatedly joins the most frequent adjacent
 * pair of symbols (ties broken by the pair's text, so the result is deterministic), stopping
 * when no pair occurs twice. Returns merges in rank order as "left right".
 */
export function learnMerges (text: string, maxMerges: number): string[] {
  const wordCounts = new Map<string, number>()
  for (const piece of byteEncodedPieces(text)) wordCounts.set(piece, (wordCounts.get(piece) ?? 0) + 1)
  const words = [...wordCounts].map(([word, count]) => ({ symbols: [...word], count }))
  const merges: string[] = []
  while (merges.length < maxMerges) {
    const pairCounts = new Map<string, number>()
    for (const { symbols, count } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const pair = `${symbols[i]} ${symbols[i + 1]}`
        pairCounts.set(pair, (pairCounts.get(pair) ?? 0) + count)
      }
    }
    let best: string | undefined
    let bestCount = 1
    for (const [pair, count] of pairCounts) {
      if (count > bestCount || (count === bestCount && best != null && pair < best)) {
        best = pair
        bestCount = count
      }
    }
    if (best == null) break
    merges.push(best)
    const [left, right] = best.split(' ')
    for (const word of words) word.symbols = mergePair(word.symbols, left, right)
  }
  return merges
}

function mergePair (symbols: string[], left: string, right: string): string[] {
  const merged: string[] = []
  for (let i = 0; i < symbols.length; i++) {
    if (symbols[i] === left && symbols[i + 1] === right) {
      merged.push(left + right)
      i++
    } else {
      merged.push(symbols[i])
    }
  }
  return merged
}
