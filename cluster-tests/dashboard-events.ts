/** The dashboard's event stream as a test reads it: raw text, to search for what must never be in it. */
export interface RecordedEvents {
  /** everything the stream sent so far, as text */
  readonly text: string
  /** closes the stream and waits until its last chunk was recorded */
  stop: () => Promise<void>
}

/** Opens `GET /dashboard/api/events` with the API key and records what it sends until stop(). */
export async function recordDashboardEvents (apiBase: string, apiKey: string): Promise<RecordedEvents> {
  const closing = new AbortController()
  const response = await fetch(`${apiBase}/dashboard/api/events`, { headers: { authorization: `Bearer ${apiKey}` }, signal: closing.signal })
  if (response.status !== 200) throw new Error(`the dashboard's event stream answered HTTP ${response.status}: ${await response.text()}`)
  let text = ''
  const reading = (async () => {
    const decoder = new TextDecoder()
    for await (const chunk of response.body ?? []) text += decoder.decode(chunk as Uint8Array, { stream: true })
  })().catch(() => {}) // the abort in stop() ends the read
  return {
    get text () { return text },
    stop: async () => { closing.abort(); await reading }
  }
}
