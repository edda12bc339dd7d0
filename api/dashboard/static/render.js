// Draws the status document: topology, layer bars, warnings, audit records. Everything goes in
// through textContent and attributes, never as HTML, so nothing in a status can become markup.
const SVG = 'http://www.w3.org/2000/svg'
const PALETTE = ['#58a6ff', '#3fb950', '#d2a8ff', '#ffa657', '#79c0ff', '#f778ba', '#a5d6ff', '#7ee787', '#e3b341']
const STATE_FILL = { alive: '#12361f', suspect: '#3d2e05', dead: '#3d1214', revoked: '#22272e' }
const STATE_STROKE = { alive: '#2ea043', suspect: '#d29922', dead: '#da3633', revoked: '#6e7681' }

export function short (peerId) { return peerId.length > 12 ? `…${peerId.slice(-8)}` : peerId }

export function bytes (n) {
  if (n == null) return '?'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${n.toFixed(n >= 10 || i === 0 ? 0 : 1)} ${units[i]}`
}

function el (tag, attrs = {}, text) {
  const node = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v))
  if (text !== undefined) node.textContent = text
  return node
}

function svg (tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag)
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v))
  if (text !== undefined) node.textContent = text
  return node
}

/** The groups of the layout: each a plan; a single pipeline is one group. */
export function groupsOf (status) {
  const engine = status.engine
  if (engine == null) return []
  if (engine.groups != null && engine.groups.length > 0) return engine.groups.map((g, i) => ({ id: g.id ?? `group ${i + 1}`, plan: g.plan }))
  return engine.plan != null ? [{ id: 'pipeline', plan: engine.plan }] : []
}

/** One colour per node, the coordinator first, stable while the membership is. */
export function colours (status) {
  const ids = [status.self.peerId, ...status.members.map(m => m.peerId).sort()]
  return new Map(ids.map((id, i) => [id, PALETTE[i % PALETTE.length]]))
}

function usedBytes (status, peerId) {
  let sum = 0
  for (const { plan } of groupsOf(status)) for (const stage of plan.stages) if (stage.nodeId === peerId) sum += stage.memory.totalBytes
  return sum
}

function layerRanges (status, peerId) {
  const ranges = []
  for (const { plan } of groupsOf(status)) {
    for (const stage of plan.stages) {
      if (stage.nodeId === peerId && stage.layerCount > 0) ranges.push(`L${stage.firstLayer}–${stage.firstLayer + stage.layerCount - 1}`)
    }
  }
  return [...new Set(ranges)]
}

function nodesOf (status) {
  const self = status.self
  const engineState = status.engine?.state
  return [
    { peerId: self.peerId, role: self.role, state: engineState === 'failed' ? 'dead' : 'alive', address: self.addresses[0] ?? '', tag: self.llamaCppTag, offered: self.memoryBytes, rtt: null, self: true },
    ...status.members.map(m => ({ peerId: m.peerId, role: m.role, state: m.state, address: m.addresses[0] ?? '', tag: m.llamaCppTag, offered: m.memoryBytes, rtt: m.rttMs, self: false }))
  ]
}

/** Topology: the coordinator and its members as boxes coloured by state, links labelled with RTT. */
export function renderTopology (container, status) {
  const nodes = nodesOf(status)
  const palette = colours(status)
  const width = container.clientWidth || 800
  const narrow = width < 600
  const boxW = 280
  const boxH = 104
  const others = nodes.slice(1)
  const columns = narrow ? 1 : Math.max(1, Math.min(others.length, 4))
  const rows = Math.ceil(others.length / columns) || 1
  const viewW = narrow ? boxW + 20 : Math.max(boxW + 20, columns * (boxW + 30))
  const viewH = narrow ? (others.length + 1) * (boxH + 60) : boxH + 90 + rows * (boxH + 40)
  // Drawn at its own size where it fits, scaled down on narrower screens.
  const root = svg('svg', { viewBox: `0 0 ${viewW} ${viewH}`, width: viewW, height: viewH, role: 'img', 'aria-label': 'cluster topology' })
  const place = (i) => {
    if (i === 0) return { x: (viewW - boxW) / 2, y: 10 }
    if (narrow) return { x: 10, y: 10 + i * (boxH + 60) }
    const row = Math.floor((i - 1) / columns)
    const inRow = Math.min(columns, others.length - row * columns)
    const col = (i - 1) % columns
    const gap = (viewW - inRow * boxW) / (inRow + 1)
    return { x: gap + col * (boxW + gap), y: boxH + 90 + row * (boxH + 40) }
  }
  const at = nodes.map((_, i) => place(i))
  const links = svg('g')
  const boxes = svg('g')
  nodes.forEach((node, i) => {
    const { x, y } = at[i]
    if (i > 0) {
      const from = { x: at[0].x + boxW / 2, y: at[0].y + boxH }
      const to = narrow ? { x: x + boxW / 2, y } : { x: x + boxW / 2, y }
      const line = svg('line', { x1: from.x, y1: from.y, x2: to.x, y2: to.y, class: node.state === 'alive' ? 'link' : 'link down' })
      links.append(line)
      const label = node.rtt != null && node.state === 'alive' ? `${node.rtt.toFixed(node.rtt < 10 ? 1 : 0)} ms` : node.state
      // Stacked on a phone, the links run behind the boxes above: label each just above its node.
      const mx = narrow ? x + boxW / 2 + 8 : (from.x + to.x) / 2 + 6
      const my = narrow ? y - 22 : (from.y + to.y) / 2
      links.append(svg('text', { x: mx, y: my, class: 'rtt' }, label))
    }
    const g = svg('g', { class: 'node', 'data-peer': node.peerId, 'data-state': node.state, transform: `translate(${x},${y})` })
    g.append(svg('rect', { class: 'node-box', width: boxW, height: boxH, rx: 8, fill: STATE_FILL[node.state] ?? STATE_FILL.revoked, stroke: STATE_STROKE[node.state] ?? STATE_STROKE.revoked }))
    g.append(svg('rect', { x: 0, y: 0, width: 8, height: boxH, rx: 3, fill: palette.get(node.peerId) }))
    const ranges = layerRanges(status, node.peerId)
    const lines = [
      [`${node.role} ${short(node.peerId)}`, 'title'],
      [`${node.self ? 'this node' : node.state}${ranges.length > 0 ? ' · ' + ranges.join(', ') : ' · no layers'}`, 'layers'],
      [node.address.replace(/\/p2p\/.*$/, ''), ''],
      [`llama.cpp ${node.tag}`, ''],
      [`memory ${bytes(usedBytes(status, node.peerId))} used / ${bytes(node.offered)}`, '']
    ]
    lines.forEach(([text, cls], j) => {
      const t = svg('text', { x: 16, y: 20 + j * 19, class: cls }, text)
      g.append(t)
    })
    boxes.append(g)
  })
  root.append(links, boxes)
  container.replaceChildren(root)
}

function stageTip (status, group, stage) {
  const member = status.members.find(m => m.peerId === stage.nodeId)
  const m = stage.memory
  const lines = [
    `${stage.role} ${short(stage.nodeId)} · ${group.id}`,
    stage.layerCount > 0 ? `layers ${stage.firstLayer}–${stage.firstLayer + stage.layerCount - 1} (${stage.layerCount})` : 'no layers',
    `weights ${bytes(m.weightBytes)}, KV cache ${bytes(m.kvCacheBytes)}`,
    m.embeddingAndHeadBytes > 0 ? `embeddings + head ${bytes(m.embeddingAndHeadBytes)}` : null,
    `total ${bytes(m.totalBytes)} of ${bytes(stage.offeredBytes)} offered`
  ]
  const time = member?.timePerToken
  if (time != null) lines.push(`per token: compute ${time.computeMs.toFixed(2)} ms, transfer ${time.transferMs.toFixed(2)} ms`)
  else if (stage.role === 'worker') lines.push('per token: not timed yet')
  return lines.filter(l => l !== null).join('\n')
}

/** The model's layers as one bar per group, each range coloured by the node that holds it. */
export function renderLayers (container, status, tooltip) {
  const palette = colours(status)
  const states = new Map(status.members.map(m => [m.peerId, m.state]))
  const groups = groupsOf(status)
  if (groups.length === 0) {
    container.replaceChildren(el('p', { class: 'muted' }, status.engine == null ? 'no engine on this node' : `no plan yet (engine ${status.engine.state}${status.engine.reason ? ': ' + status.engine.reason : ''})`))
    return
  }
  const out = groups.map(group => {
    const { plan } = group
    const wrap = el('div', { class: 'group', 'data-group': group.id })
    wrap.append(el('div', { class: 'group-label' }, `${groups.length > 1 ? group.id + ' · ' : ''}${plan.layerCount} layers · privacy ${plan.privacy}`))
    const bar = el('div', { class: 'bar' })
    for (const stage of plan.stages) {
      const colour = palette.get(stage.nodeId) ?? '#888'
      const tip = stageTip(status, group, stage)
      const state = stage.role === 'coordinator' ? 'alive' : states.get(stage.nodeId) ?? 'dead'
      if (stage.layerCount > 0) {
        const last = stage.firstLayer + stage.layerCount - 1
        const privacy = stage.role === 'coordinator' && plan.privacy === 'on'
        const seg = el('div', { class: `segment${privacy ? ' privacy' : ''}${state !== 'alive' ? ' dead' : ''}`, 'data-peer': stage.nodeId, 'data-first': stage.firstLayer, 'data-last': last, 'data-role': stage.role }, `${short(stage.nodeId)} ${stage.firstLayer}–${last}`)
        seg.style.flex = `${stage.layerCount} 1 0`
        seg.style.backgroundColor = colour
        attachTip(seg, tip, tooltip)
        bar.append(seg)
      }
    }
    const coordinator = plan.stages.find(s => s.role === 'coordinator')
    if (coordinator != null) {
      const head = el('div', { class: 'segment head', 'data-peer': coordinator.nodeId, 'data-role': 'head' }, 'head')
      head.style.backgroundColor = palette.get(coordinator.nodeId) ?? '#888'
      attachTip(head, `output head and embeddings on ${short(coordinator.nodeId)}\n${bytes(coordinator.memory.embeddingAndHeadBytes)}`, tooltip)
      bar.append(head)
    }
    wrap.append(bar)
    return wrap
  })
  container.replaceChildren(...out)
}

function attachTip (target, text, tooltip) {
  target.setAttribute('aria-label', text)
  target.addEventListener('mouseenter', () => { tooltip.textContent = text; tooltip.hidden = false })
  target.addEventListener('mousemove', event => {
    tooltip.style.left = `${Math.min(event.clientX + 12, window.innerWidth - tooltip.offsetWidth - 4)}px`
    tooltip.style.top = `${event.clientY + 14}px`
  })
  target.addEventListener('mouseleave', () => { tooltip.hidden = true })
}

/** Warnings: the status document's, a failed engine, members not alive. */
export function renderWarnings (container, status, restarts) {
  const items = []
  if (restarts > 0) items.push(['warn', `llama-server or rpc-server restarted ${restarts} time${restarts === 1 ? '' : 's'} after crashing`])
  const engine = status.engine
  if (engine != null && engine.state === 'failed') items.push(['error', `engine failed: ${engine.reason ?? 'no reason given'}`])
  for (const m of status.members) if (m.state !== 'alive') items.push(['error', `member ${short(m.peerId)} is ${m.state}`])
  for (const w of status.warnings) items.push(['warn', `${w.kind}: ${w.message}`])
  const rs = status.rpcServer
  if (rs != null && rs.state === 'failed') items.push(['error', `rpc-server failed: ${rs.reason}`])
  container.replaceChildren(...(items.length > 0 ? items.map(([cls, text]) => el('li', { class: cls }, text)) : [el('li', { class: 'muted' }, 'none')]))
}

/** The last audit records, newest first: counts, durations and statuses only. */
export function renderAudit (tbody, records) {
  const rows = [...records].reverse().map(r => {
    const tr = el('tr')
    tr.append(el('td', {}, new Date(r.time).toLocaleTimeString()), el('td', {}, String(r.status)), el('td', {}, String(r.promptTokens)), el('td', {}, String(r.completionTokens)), el('td', {}, `${Math.round(r.durationMs)} ms`))
    return tr
  })
  tbody.replaceChildren(...(rows.length > 0 ? rows : [el('tr', {}, '')]))
}

/** One line for the recent-changes list. */
export function changeItem (change) {
  const cls = change.change === 'join' ? '' : change.change === 'suspect' ? 'warn' : 'error'
  return el('li', { class: cls }, `${new Date(change.t).toLocaleTimeString()} member ${short(change.peerId)} ${change.change === 'join' ? 'joined' : change.change}`)
}
