import type { FastifyReply, FastifyRequest } from 'fastify'
import type { GenerateOptions } from '../engine/engine.js'
import { UnsupportedRequestError } from './errors.js'
import { abortWhenClientLeaves } from './event-stream.js'
import { startGenerations, type Generation } from './generation.js'
import type { ServedModel } from './served-model.js'

/** The generations of one request's choices, holding engine slots, and the signal that aborts when its client leaves. */
export interface AdmittedGenerations {
  /** one per choice, in index order */
  generations: Generation[]
  signal: AbortSignal
}

/**
 * Waits in the admission queue for one engine slot per choice (429 when the queue is full), then
 * starts the generations; more choices than the engine has slots are refused (422). The slots are
 * freed when the generations end, fail, or their client leaves (the engine is stopped first);
 * `request.usage` follows their token counts throughout.
 */
export async function admitGenerations (
  served: ServedModel,
  request: FastifyRequest,
  reply: FastifyReply,
  prompt: string | readonly number[],
  options: Omit<GenerateOptions, 'signal'>,
  promptField: string,
  choices = 1
): Promise<AdmittedGenerations> {
  const slots = served.engine.slots
  if (choices > slots) {
    throw new UnsupportedRequestError(`n is ${choices}, but this server generates at most ${slots} choice${slots === 1 ? '' : 's'} at once (its engine's parallel slots, see mesh start --parallel); ask for n <= ${slots}`, 'n', 'unsupported_value')
  }
  const signal = abortWhenClientLeaves(reply)
  const release = await request.server.admission.acquire(signal, choices)
  let generations: Generation[]
  try {
    generations = await startGenerations(served.engine, prompt, { ...options, signal }, promptField, choices, release)
  } catch (err) {
    release()
    throw err
  }
  request.usage = generations[0].usage
  // Also a generation nobody reads any more (the stream was torn down between two events) ends here.
  reply.raw.once('close', () => { for (const generation of generations) void generation.close() })
  return { generations, signal }
}
