import type { GeneratedPiece } from './engine.js'

/** What a StopTextFilter lets through after one more piece. */
export interface StopTextResult {
  /** pieces that can be passed on now */
  pieces: GeneratedPiece[]
  /** true when a stop text was found: end the generation after passing `pieces` on */
  stopped: boolean
}

/**
 * Ends a generation at the first stop text, which may span several tokens. Pieces whose text
 * could be the start of a stop text are held back until the next pieces decide; the stop text
 * itself is never passed on.
 */
export class StopTextFilter {
  readonly #stops: string[]
  #held: GeneratedPiece[] = []

  constructor (stops: readonly string[]) {
    this.#stops = stops.filter(s => s.length > 0)
  }

  /** Adds the next generated piece. */
  push (piece: GeneratedPiece): StopTextResult {
    if (this.#stops.length === 0) return { pieces: [piece], stopped: false }
    this.#held.push(piece)
    const text = this.#held.map(p => p.text).join('')
    const stopAt = this.#firstStop(text)
    if (stopAt !== undefined) {
      const pieces = this.#take(stopAt, true)
      this.#held = []
      return { pieces, stopped: true }
    }
    return { pieces: this.#take(text.length - this.#longestStopPrefixAtEnd(text), false), stopped: false }
  }

  /** Adds several pieces in order; stops at the first that completes a stop text. */
  pushAll (pieces: readonly GeneratedPiece[]): StopTextResult {
    const passed: GeneratedPiece[] = []
    for (const piece of pieces) {
      const result = this.push(piece)
      passed.push(...result.pieces)
      if (result.stopped) return { pieces: passed, stopped: true }
    }
    return { pieces: passed, stopped: false }
  }

  /** Returns the pieces still held back, when the generation ended for another reason. */
  flush (): GeneratedPiece[] {
    const pieces = this.#held
    this.#held = []
    return pieces
  }

  #firstStop (text: string): number | undefined {
    let first: number | undefined
    for (const stop of this.#stops) {
      const at = text.indexOf(stop)
      if (at >= 0 && (first === undefined || at < first)) first = at
    }
    return first
  }

  #longestStopPrefixAtEnd (text: string): number {
    let longest = 0
    for (const stop of this.#stops) {
      for (let n = Math.min(stop.length - 1, text.length); n > longest; n--) {
        if (text.endsWith(stop.slice(0, n))) { longest = n; break }
      }
    }
    return longest
  }

  // Releases the held pieces that lie before `end` (a text offset). With `cut`, the piece that
  // straddles `end` is released too, its text shortened to end there.
  #take (end: number, cut: boolean): GeneratedPiece[] {
    const taken: GeneratedPiece[] = []
    let offset = 0
    while (this.#held.length > 0) {
      const piece = this.#held[0]
      const pieceEnd = offset + piece.text.length
      if (pieceEnd <= end) {
        taken.push(piece)
      } else if (cut && offset < end) {
        taken.push({ ...piece, text: piece.text.slice(0, end - offset) })
      } else {
        break
      }
      this.#held.shift()
      offset = pieceEnd
    }
    return taken
  }
}
