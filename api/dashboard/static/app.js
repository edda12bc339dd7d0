// The dashboard page: asks for the API key once (kept in this tab's sessionStorage only), then
// follows the coordinator's event stream and draws what it says.
import uPlot from '/dashboard/uPlot.esm.js'
import { changeItem, renderAudit, renderLayers, renderTopology, renderWarnings } from '/dashboard/render.js'

const KEY_ITEM = 'llmesh-api-key'
const WINDOW_S = 600
const RECONNECT_MS = 2000
const $ = id => document.getElementById(id)

const tooltip = document.createElement('div')
tooltip.id = 'tooltip'
tooltip.hidden = true
document.body.append(tooltip)

let status = null
let stream = null
const charts = []

class KeyRefused extends Error {}

function authHeaders (key) { return { authorization: `Bearer ${key}` } }

async function refusal (response) {
  try {
    const body = await response.json()
    return body?.error?.message ?? `HTTP ${response.status}`
  } catch { return `HTTP ${response.status}` }
}

function showLogin (message) {
  if (stream !== null) stream.abort()
  $('board').hidden = true
  $('forget-key').hidden = true
  $('login').hidden = false
  $('login-error').textContent = message ?? ''
  $('api-key').focus()
}

async function open (key) {
  const response = await fetch('/dashboard/api/status', { headers: authHeaders(key), cache: 'no-store' })
  if (response.status === 401) throw new KeyRefused(`That API key was refused: ${await refusal(response)}`)
  if (!response.ok) throw new Error(`The coordinator answered ${response.status}: ${await refusal(response)}`)
  sessionStorage.setItem(KEY_ITEM, key)
  $('login').hidden = true
  $('board').hidden = false
  $('forget-key').hidden = false
  setupCharts()
  show(await response.json())
  void follow(key)
}

// A fetch, not EventSource: EventSource cannot send the key as a header.
async function follow (key) {
  for (;;) {
    stream = new AbortController()
    try {
      const response = await fetch('/dashboard/api/events', { headers: authHeaders(key), signal: stream.signal, cache: 'no-store' })
      if (response.status === 401) { sessionStorage.removeItem(KEY_ITEM); showLogin(`That API key is no longer accepted: ${await refusal(response)}`); return }
      if (!response.ok) throw new Error(`HTTP ${response.status}`)
      setLive(true)
      await readEvents(response.body, onEvent)
    } catch (err) {
      if (stream.signal.aborted) return
      console.warn('event stream:', err)
    }
    setLive(false)
    await new Promise(resolve => setTimeout(resolve, RECONNECT_MS))
  }
}

async function readEvents (body, handle) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return
    buffer += value
    let end
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      let event = 'message'
      const data = []
      for (const line of frame.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7)
        else if (line.startsWith('data: ')) data.push(line.slice(6))
      }
      if (data.length > 0) handle(event, JSON.parse(data.join('\n')))
    }
  }
}

function setLive (live) {
  $('live').textContent = live ? 'live' : 'reconnecting'
  $('live').className = `pill ${live ? 'live' : 'dead'}`
}

function onEvent (event, data) {
  if (event === 'status') show(data.status, data.restarts)
  else if (event === 'history') for (const chart of charts) chart.reset(data)
  else if (event === 'load') for (const chart of charts) chart.push(data)
  else if (event === 'audit') renderAudit($('audit').tBodies[0], data)
  else if (event === 'member') {
    $('changes').prepend(changeItem(data))
    while ($('changes').children.length > 10) $('changes').lastChild.remove()
  }
}

function show (next, restarts = 0) {
  status = next
  const engine = status.engine
  const state = engine?.state ?? 'no engine'
  $('engine-state').textContent = `engine ${state}`
  $('engine-state').className = `pill ${state}`
  renderTopology($('topology'), status)
  renderLayers($('layers'), status, tooltip)
  renderWarnings($('warnings'), status, restarts)
}

// Load charts: each a uPlot over the last WINDOW_S seconds of samples.
function chart (id, title, series) {
  const container = $(id)
  const data = [[], ...series.map(() => [])]
  const plot = new uPlot({
    title,
    width: Math.max(200, container.clientWidth),
    height: 180,
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
    axes: [{ stroke: '#8b98a5', grid: { stroke: '#2d3a47' } }, { stroke: '#8b98a5', grid: { stroke: '#2d3a47' }, size: 50 }],
    series: [{}, ...series.map(s => ({ label: s.label, stroke: s.colour, width: 2, fill: s.fill, spanGaps: false }))]
  }, data, container)
  const add = sample => {
    data[0].push(sample.t / 1000)
    series.forEach((s, i) => data[i + 1].push(s.value(sample)))
    const cutoff = sample.t / 1000 - WINDOW_S
    while (data[0].length > 0 && data[0][0] < cutoff) for (const column of data) column.shift()
  }
  return {
    reset (samples) { for (const column of data) column.length = 0; for (const s of samples) add(s); plot.setData(data) },
    push (sample) { add(sample); plot.setData(data) },
    resize () { plot.setSize({ width: Math.max(200, container.clientWidth), height: 180 }) }
  }
}

function setupCharts () {
  if (charts.length > 0) return
  const ms = v => v == null ? null : Math.round(v * 1000)
  charts.push(
    chart('chart-tps', 'Decode tokens / s', [{ label: 'tokens/s', colour: '#58a6ff', fill: 'rgba(88,166,255,.15)', value: s => s.tokensPerSecond }]),
    chart('chart-ttft', 'Time to first token (ms, last minute)', [
      { label: 'p50', colour: '#3fb950', value: s => ms(s.ttftP50) },
      { label: 'p99', colour: '#ffa657', value: s => ms(s.ttftP99) }
    ]),
    chart('chart-queue', 'Queue depth', [{ label: 'waiting', colour: '#d29922', fill: 'rgba(210,153,34,.15)', value: s => s.queueDepth }]),
    chart('chart-active', 'Active streams', [{ label: 'streams', colour: '#d2a8ff', fill: 'rgba(210,168,255,.15)', value: s => s.activeStreams }])
  )
}

let resizeTimer
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer)
  resizeTimer = setTimeout(() => {
    for (const c of charts) c.resize()
    if (status !== null) renderTopology($('topology'), status)
  }, 150)
})

// Chat: streams through the same OpenAI API, and times the reply's tokens.
async function chat (key, prompt) {
  const reply = $('chat-reply')
  const stats = $('chat-stats')
  reply.textContent = ''
  stats.textContent = 'waiting for the first token…'
  const models = await fetch('/v1/models', { headers: authHeaders(key) })
  if (!models.ok) throw new Error(await refusal(models))
  const model = (await models.json()).data[0].id
  const started = performance.now()
  const response = await fetch('/v1/chat/completions', {
    method: 'POST',
    headers: { ...authHeaders(key), 'content-type': 'application/json' },
    body: JSON.stringify({ model, stream: true, max_tokens: 64, messages: [{ role: 'user', content: prompt }] })
  })
  if (!response.ok) throw new Error(await refusal(response))
  let tokens = 0
  let first = null
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    buffer += value
    let end
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const line = buffer.slice(0, end).trim()
      buffer = buffer.slice(end + 2)
      if (!line.startsWith('data: ') || line === 'data: [DONE]') continue
      const chunk = JSON.parse(line.slice(6))
      if (chunk.error != null) throw new Error(chunk.error.message)
      const text = chunk.choices?.[0]?.delta?.content
      if (text) {
        tokens++
        first ??= performance.now()
        reply.textContent += text
        const decodeS = (performance.now() - first) / 1000
        stats.textContent = `${tokens} token${tokens === 1 ? '' : 's'} · first token after ${Math.round(first - started)} ms${tokens > 1 ? ` · ${((tokens - 1) / decodeS).toFixed(1)} tokens/s` : ''}`
      }
    }
  }
  // Not left at "waiting for the first token": the model may end its reply at once.
  if (tokens === 0) stats.textContent = 'the model ended its reply without a token'
  stats.dataset.done = 'true'
}

$('chat-form').addEventListener('submit', event => {
  event.preventDefault()
  const key = sessionStorage.getItem(KEY_ITEM)
  const prompt = $('chat-input').value.trim()
  if (key === null || prompt === '') return
  $('chat-send').disabled = true
  delete $('chat-stats').dataset.done
  chat(key, prompt)
    .catch(err => { $('chat-stats').textContent = `chat failed: ${err.message}` })
    .finally(() => { $('chat-send').disabled = false })
})

$('login-form').addEventListener('submit', event => {
  event.preventDefault()
  const key = $('api-key').value.trim()
  $('login-error').textContent = ''
  open(key).catch(err => { showLogin(err instanceof KeyRefused ? err.message : `Could not reach the coordinator: ${err.message}`) })
  $('api-key').value = ''
})

$('forget-key').addEventListener('click', () => { sessionStorage.removeItem(KEY_ITEM); showLogin('') })

const saved = sessionStorage.getItem(KEY_ITEM)
if (saved === null) showLogin()
else open(saved).catch(err => { sessionStorage.removeItem(KEY_ITEM); showLogin(err.message) })
