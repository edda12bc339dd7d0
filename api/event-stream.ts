import { Readable } from 'node:stream'
import type { FastifyReply } from 'fastify'
import { toApiError } from './error-handler.js'

/**
 * A signal that aborts when the client closes the connection before its answer was sent in full,
 * so that the engine stops generating for nobody.
 */
export function abortWhenClientLeaves (reply: FastifyReply): AbortSignal {
  const controller = new AbortController()
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort()
  })
  return controller.signal
}

/**
 * Answers with a server-sent event stream: each event as `data: <json>` the moment it is produced,
 * then `data: [DONE]`. A failure mid-stream becomes one OpenAI error event that ends the stream.
 */
export async function sendEventStream (reply: FastifyReply, events: AsyncIterable<object>, signal: AbortSignal): Promise<FastifyReply> {
  async function * frames (): AsyncGenerator<string> {
    try {
      for await (const event of events) yield `data: ${JSON.stringify(event)}\n\n`
      yield 'data: [DONE]\n\n'
    } catch (err) {
      if (signal.aborted) return // the client is gone: nobody to tell
      const apiError = toApiError(err)
      reply.log.error({ error: (err as Error).name, code: apiError.code }, 'stream failed')
      yield `data: ${JSON.stringify(apiError.toBody())}\n\n`
    }
  }
  // highWaterMark 1: generate no further ahead of a slow client than one event.
  const body = Readable.from(frames(), { objectMode: false, highWaterMark: 1 })
  return await reply
    .header('content-type', 'text/event-stream; charset=utf-8')
    .header('cache-control', 'no-cache')
    .header('x-accel-buffering', 'no')
    .send(body)
}
