// The client side of `mesh bench api`, run in a worker thread so that parsing the streams does
// not take event-loop time from the API it measures (real clients are other processes).
import { request, type IncomingMessage, type RequestOptions } from 'node:http'
import { performance } from 'node:perf_hooks'
import { parentPort, Worker, workerData } from 'node:worker_threads'

/** One streaming request, sent `requests` times with `concurrency` in flight. */
export interface LoadSpec {
  http: RequestOptions
  body: string
  /** how to read its events: the API's OpenAI chunks or llama-server's /completion events */
  events: 'openai' | 'llama-server'
  concurrency: number
  requests: number
}

/** What one load measured. */
export interface LoadRun {
  /** tokens generated, counted from the events */
  tokens: number
  /** from the first request sent to the last answer read */
  seconds: number
  /** time to the first text of every request that succeeded */
  ttftMs: number[]
  /** requests with an HTTP error, an error event, or no tokens */
  errors: number
}

/** The text and the token count one `data:` event carries. */
function readEvent (kind: LoadSpec['events'], event: Record<string, unknown>): { text: string, tokens: number } {
  if (kind === 'llama-server') {
    // Counted as the API counts a reply: every token generated (tokens_predicted, also those of an
    // incomplete character it does not report), but not the end-of-generation token it stopped at.
    const tokens = event.stop === true && typeof event.tokens_predicted === 'number' ? event.tokens_predicted - (event.stop_type === 'eos' ? 1 : 0) : 0
    return { text: typeof event.content === 'string' ? event.content : '', tokens }
  }
  // The API's chunks carry text (a chat delta's content or tool call); the token count comes with the final usage chunk.
  const usage = event.usage as { completion_tokens: number } | undefined
  const choice = (event.choices as Array<{ text?: string, delta?: { content?: string, tool_calls?: unknown[] } }> | undefined)?.[0]
  const text = choice?.text ?? choice?.delta?.content ?? ((choice?.delta?.tool_calls?.length ?? 0) > 0 ? 'call' : '')
  return { text, tokens: usage?.completion_tokens ?? 0 }
}

async function * sseEvents (response: IncomingMessage): AsyncGenerator<Record<string, unknown>> {
  let buffered = ''
  for await (const chunk of response.setEncoding('utf8')) {
    buffered += chunk as string
    let end: number
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      const block = buffered.slice(0, end)
      buffered = buffered.slice(end + 2)
      if (!block.startsWith('data: ') || block === 'data: [DONE]') continue
      yield JSON.parse(block.slice('data: '.length)) as Record<string, unknown>
    }
  }
}

// A fresh connection per request on both sides, as the llama-server engine's own client does.
async function streamOnce (spec: LoadSpec): Promise<{ ttftMs: number, tokens: number }> {
  const started = performance.now()
  const response = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request({ ...spec.http, method: 'POST', agent: false, headers: { ...spec.http.headers, 'content-type': 'application/json' } }, resolve)
    req.once('error', reject)
    req.end(spec.body)
  })
  if (response.statusCode !== 200) {
    response.resume()
    throw new Error(`HTTP ${response.statusCode ?? '?'}`)
  }
  let ttftMs = -1
  let tokens = 0
  for await (const event of sseEvents(response)) {
    if (typeof event.error === 'object' && event.error !== null) throw new Error('error event')
    const read = readEvent(spec.events, event)
    if (ttftMs < 0 && read.text !== '') ttftMs = performance.now() - started
    tokens += read.tokens
  }
  return { ttftMs, tokens }
}

async function runLoad (spec: LoadSpec): Promise<LoadRun> {
  let next = 0
  const run: LoadRun = { tokens: 0, seconds: 0, ttftMs: [], errors: 0 }
  const started = performance.now()
  await Promise.all(Array.from({ length: spec.concurrency }, async () => {
    while (next < spec.requests) {
      next++
      try {
        const one = await streamOnce(spec)
        run.tokens += one.tokens
        if (one.tokens === 0 || one.ttftMs < 0) run.errors++
        else run.ttftMs.push(one.ttftMs)
      } catch {
        run.errors++
      }
    }
  }))
  run.seconds = (performance.now() - started) / 1000
  return run
}

/** Runs one load in a worker thread and resolves with what it measured. */
export async function runLoadInWorker (spec: LoadSpec): Promise<LoadRun> {
  const worker = new Worker(new URL(import.meta.url), { workerData: spec })
  try {
    return await new Promise<LoadRun>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
      worker.once('exit', code => { reject(new Error(`the load worker exited with code ${code} before reporting`)) })
    })
  } finally {
    await worker.terminate()
  }
}

// As the worker runLoadInWorker starts: measure, report, exit.
const spec = workerData as LoadSpec | null
if (parentPort !== null && spec?.events !== undefined) {
  const port = parentPort
  void runLoad(spec).then(run => { port.postMessage(run) })
}
