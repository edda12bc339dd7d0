import type { GeneratedPiece } from '../engine/engine.js'
import type { Generation } from './generation.js'

/** One step of a request's choices read at once: a piece of choice `index`, or the end of that choice. */
export type ChoiceEvent = { index: number, piece: GeneratedPiece } | { index: number, end: true }

/**
 * Reads the generations of a request's choices at once and yields their pieces as they come,
 * each choice's end after its last piece; stopping early closes every generation.
 */
export async function * interleave (generations: readonly Generation[]): AsyncGenerator<ChoiceEvent, void, undefined> {
  const iterators = generations.map(generation => generation[Symbol.asyncIterator]())
  const next = (index: number): Promise<[number, IteratorResult<GeneratedPiece, void>]> => iterators[index].next().then(result => [index, result])
  const pending = new Map(iterators.map((_, index) => [index, next(index)]))
  try {
    while (pending.size > 0) {
      const [index, result] = await Promise.race(pending.values())
      if (result.done === true) {
        pending.delete(index)
        yield { index, end: true }
      } else {
        pending.set(index, next(index))
        yield { index, piece: result.value }
      }
    }
  } finally {
    // The reads still pending settle once their generation closes; nobody waits for them.
    for (const read of pending.values()) read.catch(() => {})
    await Promise.all(generations.map(async generation => { await generation.close() }))
  }
}

/** Every choice's pieces, read whole and at once, in index order. */
export async function readChoices (generations: readonly Generation[]): Promise<GeneratedPiece[][]> {
  const choices: GeneratedPiece[][] = generations.map(() => [])
  for await (const event of interleave(generations)) {
    if ('piece' in event) choices[event.index].push(event.piece)
  }
  return choices
}
