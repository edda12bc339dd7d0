import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { GeneratedPiece } from './engine.js'
import { StopTextFilter } from './stop-text.js'

/** Feeds texts as pieces (token ids 0, 1, ...) and collects what the filter lets through. */
function run (stops: string[], texts: string[]): { pieces: GeneratedPiece[], stopped: boolean } {
  const filter = new StopTextFilter(stops)
  const pieces: GeneratedPiece[] = []
  for (const [token, text] of texts.entries()) {
    const result = filter.push({ token, text })
    pieces.push(...result.pieces)
    if (result.stopped) return { pieces, stopped: true }
  }
  return { pieces: [...pieces, ...filter.flush()], stopped: false }
}

describe('stop texts', () => {
  it('passes everything on when there are no stop texts', () => {
    assert.deepEqual(run([], ['a', 'b']), { pieces: [{ token: 0, text: 'a' }, { token: 1, text: 'b' }], stopped: false })
  })

  it('ends at a stop text inside one piece, keeping the text before it', () => {
    assert.deepEqual(run(['END'], ['hello', ' wENDorld', 'never']), {
      pieces: [{ token: 0, text: 'hello' }, { token: 1, text: ' w' }],
      stopped: true
    })
  })

  it('finds a stop text split over several pieces and drops all of it', () => {
    assert.deepEqual(run(['\n\n'], ['one', '\n', '\n', 'two']), { pieces: [{ token: 0, text: 'one' }], stopped: true })
  })

  it('holds back a possible start of a stop text and releases it when it is not one', () => {
    const filter = new StopTextFilter(['</s>'])
    assert.deepEqual(filter.push({ token: 0, text: 'a<' }), { pieces: [], stopped: false })
    assert.deepEqual(filter.push({ token: 1, text: '/' }), { pieces: [], stopped: false })
    assert.deepEqual(filter.push({ token: 2, text: 'x' }), {
      pieces: [{ token: 0, text: 'a<' }, { token: 1, text: '/' }, { token: 2, text: 'x' }],
      stopped: false
    })
  })

  it('returns held pieces when the generation ends for another reason', () => {
    assert.deepEqual(run(['STOP'], ['go', 'ST']), { pieces: [{ token: 0, text: 'go' }, { token: 1, text: 'ST' }], stopped: false })
  })

  it('stops at the earliest of several stop texts', () => {
    assert.deepEqual(run(['bb', 'ab'], ['xab', 'b']), { pieces: [{ token: 0, text: 'x' }], stopped: true })
  })

  it('passes on empty pieces (an incomplete character) in order', () => {
    assert.deepEqual(run(['zz'], ['', 'é', '']), {
      pieces: [{ token: 0, text: '' }, { token: 1, text: 'é' }, { token: 2, text: '' }],
      stopped: false
    })
  })
})
