import type { FastifyInstance } from 'fastify'
import type { Engine } from '../../engine/engine.js'
import { SPECIAL_TOKENS } from '../../engine/synthetic-model/index.js'
import { createApiServer, type ApiServerOptions } from '../server.js'

/** An API server listening on 127.0.0.1 for a test, and a way to call it. */
export interface TestApi {
  /** base URL, e.g. http://127.0.0.1:PORT */
  url: string
  apiKey: string
  modelName: string
  /** the fastify instance, e.g. to read `admission` or count requests on `app.server` */
  app: FastifyInstance
  /** POSTs JSON to `path` with the API key; `init` may override headers or add a signal */
  post: (path: string, body: unknown, init?: RequestInit) => Promise<Response>
  close: () => Promise<void>
}

/** Starts the API over `engine` on a free port of 127.0.0.1, with a fixed key and model name. */
export async function startTestApi (engine: Engine, options: Omit<ApiServerOptions, 'engine' | 'apiKey' | 'modelName'> = {}): Promise<TestApi> {
  const apiKey = 'test-key-0123456789'
  const modelName = 'test-model'
  const app = await createApiServer({ ...options, engine, apiKey, modelName })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('the test API did not listen on TCP')
  const url = `http://127.0.0.1:${address.port}`
  return {
    url,
    apiKey,
    modelName,
    app,
    post: async (path, body, init = {}) => await fetch(url + path, {
      method: 'POST',
      ...init,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}`, ...init.headers },
      body: JSON.stringify(body)
    }),
    close: async () => { await app.close() }
  }
}

/** The `data:` payloads of a server-sent event stream, `[DONE]` included as the string it is. */
export async function readEvents (response: Response): Promise<unknown[]> {
  const text = await response.text()
  return text.split('\n\n').filter(block => block.startsWith('data: ')).map(block => {
    const data = block.slice('data: '.length)
    return data === '[DONE]' ? data : JSON.parse(data) as unknown
  })
}

/** A logit_bias that keeps a synthetic model from ending its reply early (no end-of-generation token). */
export async function noEndBias (engine: Engine): Promise<Record<string, number>> {
  const ends = [SPECIAL_TOKENS.eos, SPECIAL_TOKENS.imEnd]
  const ids = await Promise.all(ends.map(async text => (await engine.tokenize(text, { special: true })).at(-1) as number))
  return Object.fromEntries(ids.map(id => [String(id), -100]))
}
