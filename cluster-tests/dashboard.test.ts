// The web dashboard in a real browser (Debian's chromium): `mesh up --workers 2`, the key
// entered once, three nodes with their layers, a worker killed turning dead on the page, the chat
// box streaming a reply, a wrong key refused in words. Screenshots of each state go to
// test-output/dashboard/.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Browser, Page } from 'puppeteer-core'
import { writeTestModel, type TestModel } from '../engine/test-support/write-test-model.js'
import { freePort } from '../engine/free-port.js'
import { launchChromium } from './chromium.js'
import { recordDashboardEvents } from './dashboard-events.js'
import { MeshUp } from './mesh-up-process.js'
import { descendantPids } from './process-tree.js'

const SCREENSHOTS = fileURLToPath(new URL('../../test-output/dashboard/', import.meta.url))
const CANARY = `canary-${randomUUID()}`
/** The promise: a killed worker shows dead, and the layer bar changes, within 10 s. */
const DEATH_SHOWN_MS = 10_000
const PAGE_TIMEOUT_MS = 60_000
const CHAT_TIMEOUT_MS = 180_000

describe('web dashboard in headless chromium', () => {
  let model: TestModel
  let home: string
  let up: MeshUp | undefined
  let chromium: Awaited<ReturnType<typeof launchChromium>> | undefined
  let browser: Browser
  let base: string
  let apiKey: string
  let page: Page

  before(async () => {
    chromium = await launchChromium()
    browser = chromium.browser
    await mkdir(SCREENSHOTS, { recursive: true })
    model = await writeTestModel({ layers: 8 })
    home = await mkdtemp(join(tmpdir(), 'llmesh-dashboard-'))
    const port = await freePort()
    base = `http://127.0.0.1:${port}`
    up = new MeshUp(home, ['--workers', '2', '--api-port', String(port), '--model', model.path])
    await up.ready()
    apiKey = (await readFile(join(home, 'up', 'coordinator', 'api-key'), 'utf8')).trim()
    page = await browser.newPage()
    page.setDefaultTimeout(PAGE_TIMEOUT_MS)
    await page.setViewport({ width: 1280, height: 900 })
  })

  after(async () => {
    await chromium?.close()
    await up?.kill()
    await rm(home, { recursive: true, force: true })
    await model?.remove()
  })

  async function shot (name: string): Promise<void> {
    await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true })
  }

  async function login (key: string): Promise<void> {
    await page.waitForSelector('#api-key', { visible: true })
    await page.type('#api-key', key)
    await page.click('#login-form button[type=submit]')
  }

  it('refuses a wrong key with a clear message, and keeps the key out of URLs and cookies', async () => {
    const response = await page.goto(`${base}/`)
    assert.equal(response?.status(), 200)
    const csp = response?.headers()['content-security-policy'] ?? ''
    assert.match(csp, /script-src 'self'/)
    assert.doesNotMatch(csp, /unsafe-inline|https?:/)
    await login('not-the-key')
    await page.waitForFunction("document.getElementById('login-error').textContent !== ''")
    assert.match(await page.$eval('#login-error', e => e.textContent ?? ''), /^That API key was refused: the API key is not valid/)
    assert.equal(await page.$eval('#board', e => e.hasAttribute('hidden')), true)
    await shot('1-wrong-key')
    assert.equal(new URL(page.url()).search, '')
  })

  it('shows the three nodes with the layer ranges each holds, live over the event stream', async () => {
    await login(apiKey)
    await page.waitForFunction(`document.querySelectorAll('#topology .node').length === 3 &&
      [...document.querySelectorAll('#topology .node text.layers')].every(line => /L\\d+–\\d+/.test(line.textContent))`)
    const nodes = await page.$$eval('#topology .node', all => all.map(n => ({ peer: n.getAttribute('data-peer'), state: n.getAttribute('data-state'), text: n.textContent })))
    assert.deepEqual(nodes.map(n => n.state), ['alive', 'alive', 'alive'])
    assert.match(nodes[0].text ?? '', /^coordinator/)
    for (const node of nodes) assert.match(node.text ?? '', /llama\.cpp v\S+.*memory .* used \/ /)
    const segments = await page.$$eval('#layers .segment[data-first]', all => all.map(s => s.getAttribute('data-peer')))
    assert.deepEqual(new Set(segments), new Set(nodes.map(n => n.peer)), 'every node holds a range of the layer bar')
    assert.ok(await page.$('#layers .segment.privacy') !== null, 'the coordinator\'s privacy layers are marked')
    assert.ok(await page.$('#layers .segment.head') !== null, 'the output head is marked')
    // The pointer goes to where the segment is, not to the element: the bar is drawn anew with
    // every status event, and page.hover failed on a segment redrawn between finding and hovering it.
    const middle = await page.$eval('#layers .segment[data-role="worker"]', segment => {
      segment.scrollIntoView({ block: 'center' })
      const box = segment.getBoundingClientRect()
      return { x: box.x + box.width / 2, y: box.y + box.height / 2 }
    })
    await page.mouse.move(middle.x, middle.y)
    await page.waitForFunction("!document.getElementById('tooltip').hidden")
    assert.match(await page.$eval('#tooltip', e => e.textContent ?? ''), /^worker .*\nlayers \d+–\d+ \(\d+\)\nweights \d.* KV cache \d[\s\S]*per token: /)
    await page.waitForFunction("document.getElementById('live').textContent === 'live'")
    assert.equal(await page.evaluate("sessionStorage.getItem('llmesh-api-key')"), apiKey, 'the key is kept in the tab')
    assert.equal(await page.evaluate('document.cookie'), '')
    await shot('2-cluster')
  })

  it('streams a chat reply with its tokens per second, and the event stream carries none of it', async () => {
    const events = await recordDashboardEvents(base, apiKey)
    await page.type('#chat-input', `Remember ${CANARY} and say hello.`)
    // The random model samples its end of turn first now and then (the canary differs every run):
    // the page then says so, and the question is sent again, as a user would.
    let reply = ''
    for (let attempt = 1; ; attempt++) {
      await page.click('#chat-send')
      await page.waitForSelector('#chat-stats[data-done]', { timeout: CHAT_TIMEOUT_MS })
      reply = await page.$eval('#chat-reply', e => e.textContent ?? '')
      const stats = await page.$eval('#chat-stats', e => e.textContent ?? '')
      if (/tokens\/s$/.test(stats) || attempt === 5) {
        assert.match(stats, /^\d+ tokens · first token after \d+ ms · \d+\.\d tokens\/s$/)
        break
      }
      assert.match(stats, /^(the model ended its reply without a token|1 token · first token after \d+ ms)$/)
    }
    assert.ok(reply.length > 0, 'a reply streamed into the page')
    assert.ok(!reply.includes(CANARY), 'the synthetic model echoed the canary; the leak search would be meaningless')
    // The finished request reaches the page as an audit record: counts only.
    await page.waitForFunction("[...document.querySelectorAll('#audit tbody tr')].some(row => row.children.length === 5 && row.children[3].textContent !== '0' && row.children[1].textContent === '200')")
    await events.stop()
    assert.match(events.text, /^event: load$/m, 'load samples came while the reply streamed')
    assert.ok(!events.text.includes(CANARY), 'the dashboard event stream holds the prompt')
    // The whole reply, not its words: a short word of random output can be in any status document.
    if (reply.length >= 16) assert.ok(!events.text.includes(JSON.stringify(reply).slice(1, -1)), 'the dashboard event stream holds the reply')
    await shot('3-chat')
  })

  it('turns a SIGKILLed worker dead and changes the layer bar within 10 s', async () => {
    const worker = /^started worker-1 \(pid (\d+),/m.exec(up?.stdout ?? '')
    assert.ok(worker !== null, up?.stdout)
    const workerPid = Number(worker[1])
    const peerId = /^worker-1 joined cluster \S+ as (\S+)$/m.exec(up?.stdout ?? '')?.[1]
    assert.ok(peerId !== undefined, up?.stdout)
    const children = await descendantPids(workerPid)
    const killedAt = Date.now()
    // The worker's machine gone at once: the node and its rpc-server.
    for (const pid of [workerPid, ...children]) {
      try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ }
    }
    await page.waitForFunction(`document.querySelector('#topology .node[data-peer="${peerId}"]')?.getAttribute('data-state') === 'dead' &&
      document.querySelector('#layers .segment[data-peer="${peerId}"]:not(.dead)') === null`, { timeout: DEATH_SHOWN_MS + 5_000 })
    const shownMs = Date.now() - killedAt
    await shot('4-worker-dead')
    assert.ok(shownMs <= DEATH_SHOWN_MS, `the page showed the worker dead after ${shownMs} ms`)
    assert.match(await page.$eval('#warnings', e => e.textContent ?? ''), new RegExp(`member …${peerId.slice(-8)} is dead`))
  })

  it('stays readable on a 390 px wide phone screen', async () => {
    await page.setViewport({ width: 390, height: 844 })
    await page.waitForFunction('document.documentElement.scrollWidth <= 390')
    await shot('5-phone')
  })
})
