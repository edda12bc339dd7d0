import { performance } from 'node:perf_hooks'
import type { Engine, FinishReason, GeneratedPiece, GenerateInput, GenerateOptions, TokenizeOptions } from './engine.js'

/** Told the timing of every generated token; never its text. */
export interface GenerationObserver {
  /** a generation produced its first token `seconds` after it was asked for (prompt processing included) */
  firstToken: (seconds: number) => void
  /** a generation produced another token `seconds` after its previous one */
  nextToken: (seconds: number) => void
}

/**
 * An engine that forwards to another and reports when each token arrives: time to first token
 * and inter-token latency are measured where the tokens stream, the same for every route.
 */
export class ObservedEngine implements Engine {
  readonly #inner: Engine
  readonly #observer: GenerationObserver

  constructor (inner: Engine, observer: GenerationObserver) {
    this.#inner = inner
    this.#observer = observer
  }

  get name (): string { return this.#inner.name }
  get modelPath (): string { return this.#inner.modelPath }
  get threads (): number { return this.#inner.threads }
  get contextSize (): number { return this.#inner.contextSize }
  get slots (): number { return this.#inner.slots }

  async tokenize (text: string, options?: TokenizeOptions): Promise<number[]> {
    return await this.#inner.tokenize(text, options)
  }

  async * generate (input: GenerateInput, options: GenerateOptions): AsyncGenerator<GeneratedPiece, FinishReason, undefined> {
    const pieces: AsyncIterator<GeneratedPiece, FinishReason> = this.#inner.generate(input, options)
    let last = performance.now()
    let first = true
    try {
      while (true) {
        const step = await pieces.next()
        if (step.done === true) return step.value
        const now = performance.now()
        if (first) this.#observer.firstToken((now - last) / 1000)
        else this.#observer.nextToken((now - last) / 1000)
        first = false
        last = now
        yield step.value
      }
    } finally {
      // Ends the inner generation when our consumer stops early.
      await pieces.return?.()
    }
  }

  async dispose (): Promise<void> {
    await this.#inner.dispose()
  }
}
