import type { FastifyReply, FastifyRequest } from 'fastify'
import type { GenerateOptions } from '../engine/engine.js'
import { abortWhenClientLeaves } from './event-stream.js'
import { startGeneration, type Generation } from './generation.js'
import type { ServedModel } from './served-model.js'

/** A generation that holds an engine slot, and the signal that aborts when its client leaves. */
export interface AdmittedGeneration {
  generation: Generation
  signal: AbortSignal
}

/**
 * Waits in the admission queue for an engine slot (429 when the queue is full), then starts the
 * generation. The slot is freed when the generation ends, fails, or its client leaves (the
 * engine is stopped first); `request.usage` follows the generation's token counts throughout.
 */
export async function admitGeneration (
  served: ServedModel,
  request: FastifyRequest,
  reply: FastifyReply,
  prompt: string | readonly number[],
  options: Omit<GenerateOptions, 'signal'>,
  promptField: string
): Promise<AdmittedGeneration> {
  const signal = abortWhenClientLeaves(reply)
  const release = await request.server.admission.acquire(signal)
  let generation: Generation
  try {
    generation = await startGeneration(served.engine, prompt, { ...options, signal }, promptField, release)
  } catch (err) {
    release()
    throw err
  }
  request.usage = generation.usage
  // Also a generation nobody reads any more (the stream was torn down between two events) ends here.
  reply.raw.once('close', () => { void generation.close() })
  return { generation, signal }
}
