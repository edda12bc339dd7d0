/**
 * Deterministic pseudo-random weights. Each tensor has its own generator, seeded from the model
 * seed and the tensor's name, so a tensor's values do not depend on the order tensors are written.
 * xoshiro128** on 32-bit integers: fast in JS and identical on every platform.
 */

/** Fills arrays with the next uniform values in [-amplitude, amplitude) of one tensor's stream. */
export type ValueFiller = (out: Float32Array) => void

/** A generator of uniform values in [-amplitude, amplitude) for one tensor. */
export function uniformValues (seed: number, tensorName: string, amplitude: number): () => ValueFiller {
  return () => {
    const state = initialState(seed, tensorName)
    const scale = (2 * amplitude) / 2 ** 16
    // The second value of a draw that did not fit the previous call's array.
    let spare: number | undefined
    return (out) => {
      // Locals, not closure variables: V8 keeps them in registers (about 3x faster).
      let s0 = state[0]
      let s1 = state[1]
      let s2 = state[2]
      let s3 = state[3]
      let i = 0
      if (spare !== undefined && out.length > 0) {
        out[i++] = spare
        spare = undefined
      }
      // Each 32-bit draw gives two values of 16 bits: finer than f16 stores, and half the draws.
      for (; i < out.length; i += 2) {
        const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9)
        const t = s1 << 9
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 11)
        out[i] = (result >>> 16) * scale - amplitude
        const second = (result & 0xffff) * scale - amplitude
        if (i + 1 < out.length) out[i + 1] = second
        else spare = second
      }
      state[0] = s0
      state[1] = s1
      state[2] = s2
      state[3] = s3
    }
  }
}

/** A generator that fills every value with `value` (used for norm weights). */
export function constantValues (value: number): () => ValueFiller {
  return () => (out) => { out.fill(value) }
}

function rotl (x: number, k: number): number {
  return (x << k) | (x >>> (32 - k))
}

// FNV-1a over the seed's bytes and the name, then splitmix32 to spread it over four state words.
function initialState (seed: number, tensorName: string): Int32Array {
  let hash = 0x811c9dc5
  const bytes = [seed & 0xff, (seed >>> 8) & 0xff, (seed >>> 16) & 0xff, (seed >>> 24) & 0xff, ...Buffer.from(tensorName, 'utf8')]
  for (const byte of bytes) hash = Math.imul(hash ^ byte, 0x01000193)
  const words = new Int32Array(4)
  for (let i = 0; i < 4; i++) {
    hash = (hash + 0x9e3779b9) | 0
    let z = hash
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
    words[i] = z ^ (z >>> 16)
  }
  return words
}
