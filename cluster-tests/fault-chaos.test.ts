// Chaos: three workers, a steady stream of greedy requests (plain and streamed) for 60 s, and one
// fault every 10 s (kill, pause, link down, restart; the previous fault healed at each step).
// Every request must either complete with the reference text or get a typed error (503/429 with
// an OpenAI error body, or an SSE error event); none may hang past its timeout or end a
// truncated body as if complete; the cluster must end on the full plan.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { deathLine, lineAfter, setLink, signalTree, startServingCluster, useNamespacedFaultSuite, waitForPlan, type ApiAnswer } from './fault-harness.js'

const PROMPT = 'The quick brown fox jumps over the lazy dog.'
const TOKENS = 16
const RUN_MS = 60_000
const FAULT_EVERY_MS = 10_000
/** Above the serving engine's recovery bound (60 s), so that a request waiting for recovery ends on the server's word. */
const REQUEST_TIMEOUT_MS = 75_000

type Outcome = 'completed' | 'typed error' | 'wrong text' | 'untyped error' | 'truncated' | 'timeout or connection error'

/** What one request ended with, judged against the reference text. */
function judge (answer: ApiAnswer, stream: boolean, reference: string): Outcome {
  if (answer.status === 503 || answer.status === 429) {
    const body = JSON.parse(answer.body) as { error?: { message?: string } }
    return typeof body.error?.message === 'string' ? 'typed error' : 'untyped error'
  }
  if (answer.status !== 200) return 'untyped error'
  if (!stream) {
    const text = (JSON.parse(answer.body) as { choices: Array<{ text: string }> }).choices[0].text
    return text === reference ? 'completed' : 'wrong text'
  }
  let text = ''
  for (const frame of answer.body.split('\n\n').filter(f => f.startsWith('data: '))) {
    const data = frame.slice('data: '.length)
    if (data === '[DONE]') return text === reference ? 'completed' : 'wrong text'
    const event = JSON.parse(data) as { error?: { message?: string }, choices?: Array<{ text: string }> }
    if (event.error !== undefined) return typeof event.error.message === 'string' ? 'typed error' : 'untyped error'
    text += event.choices?.[0]?.text ?? ''
  }
  return 'truncated'
}

describe('chaos: faults every 10 s under steady load', { timeout: 900_000 }, () => {
  const suite = useNamespacedFaultSuite('c', { layers: 8 })

  it('completes or refuses every request with a typed error, and ends on the full plan', async (t) => {
    const { pair, tag, cluster } = suite
    if (pair === undefined) {
      t.skip('"ip netns add" was refused on this machine (needs root or CAP_NET_ADMIN)')
      return
    }
    const netns = pair
    // Workers 1 and 2 share the coordinator's namespace; worker 3 sits behind the veth link.
    const placements = [{ netns: netns.names[0], address: netns.addresses[0] }, { netns: netns.names[0], address: netns.addresses[0] }, { netns: netns.names[1], address: netns.addresses[1] }]
    const m = suite.mesh = await startServingCluster(cluster, { modelPath: suite.model.path, workers: 3, coordinator: placements[0], worker: n => placements[n] })
    const first = await m.api.complete(PROMPT, TOKENS)
    assert.equal(first.status, 200, first.body)
    const reference = first.text ?? ''

    const startAgain = (n: number): void => { m.workers[n] = cluster.start(m.workers[n].home, m.workerArgs[n], m.workerPlacement[n].netns) }
    const faults: Array<{ name: string, worker: number, apply: () => Promise<void>, heal: () => Promise<void> }> = [
      { name: 'SIGKILL', worker: 0, apply: async () => { await signalTree(m.workers[0], 'SIGKILL') }, heal: async () => { startAgain(0) } },
      { name: 'SIGSTOP', worker: 1, apply: async () => { await signalTree(m.workers[1], 'SIGSTOP') }, heal: async () => { await signalTree(m.workers[1], 'SIGCONT') } },
      { name: 'link down', worker: 2, apply: async () => { await setLink(netns, tag, 'down') }, heal: async () => { await setLink(netns, tag, 'up') } },
      { name: 'restart', worker: 0, apply: async () => { await m.workers[0].stop('SIGTERM'); startAgain(0) }, heal: async () => {} },
      { name: 'SIGKILL', worker: 1, apply: async () => { await signalTree(m.workers[1], 'SIGKILL') }, heal: async () => { startAgain(1) } },
      { name: 'SIGSTOP', worker: 2, apply: async () => { await signalTree(m.workers[2], 'SIGSTOP') }, heal: async () => { await signalTree(m.workers[2], 'SIGCONT') } }
    ]

    const outcomes = new Map<string, number>()
    const slowest = { ms: 0 }
    let running = true
    const client = async (stream: boolean): Promise<void> => {
      while (running) {
        const started = Date.now()
        let outcome: Outcome
        try {
          const answer = await m.api.post('/v1/completions', { model: 'model', prompt: PROMPT, max_tokens: TOKENS, temperature: 0, stream }, REQUEST_TIMEOUT_MS)
          outcome = judge(answer, stream, reference)
        } catch {
          outcome = 'timeout or connection error'
        }
        slowest.ms = Math.max(slowest.ms, Date.now() - started)
        const key = `${stream ? 'stream' : 'plain'}: ${outcome}`
        outcomes.set(key, (outcomes.get(key) ?? 0) + 1)
        if (outcome !== 'completed') await delay(500)
      }
    }
    const clients = [client(false), client(true)]

    const logFrom = m.coordinator.lines.length
    const detections: string[] = []
    const watches: Array<Promise<void>> = []
    const runStart = Date.now()
    for (const [i, fault] of faults.entries()) {
      await delay(Math.max(0, runStart + i * FAULT_EVERY_MS - Date.now()))
      if (i > 0) await faults[i - 1].heal()
      const from = m.coordinator.lines.length
      await fault.apply()
      // The fault is in effect once apply returns (the signal sent, the link down).
      const at = Date.now()
      // A clean restart announces its leave: only the other faults are detected by silence.
      if (fault.name !== 'restart') {
        watches.push(lineAfter(m.coordinator, from, deathLine(m.workerIds[fault.worker]), 30_000)
          .then(seen => { detections.push(`${fault.name}: ${seen - at} ms`) }, () => { detections.push(`${fault.name}: not detected within 30 s`) }))
      }
    }
    await delay(Math.max(0, runStart + RUN_MS - Date.now()))
    await faults[faults.length - 1].heal()
    running = false
    await Promise.all([...clients, ...watches])

    const healedAt = Date.now()
    await waitForPlan(m.coordinator.home, m.workerIds, 180_000)
    const final = await m.api.complete(PROMPT, TOKENS)
    // The coordinator's view of the run, to tell where the time went when a count looks wrong.
    const timeline = m.coordinator.lines.slice(logFrom).filter(line => / (engine|serving with|member|no plan)/.test(line))
    console.log(`chaos timeline (coordinator):\n${timeline.join('\n')}`)
    console.log(`chaos detection times: ${detections.join('; ')}`)
    console.log(`chaos outcomes: ${JSON.stringify(Object.fromEntries([...outcomes].sort()))}; slowest request ${slowest.ms} ms; full plan back ${Date.now() - healedAt} ms after healing`)

    const bad = [...outcomes].filter(([key]) => !key.endsWith(': completed') && !key.endsWith(': typed error'))
    assert.deepEqual(bad, [], 'every request completed correctly or got a typed error')
    assert.ok([...outcomes].some(([key, count]) => key.endsWith(': completed') && count > 0), 'requests were served during the run')
    assert.equal(final.status, 200, final.body)
    assert.equal(final.text, reference)
  })
})
