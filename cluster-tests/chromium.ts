import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import puppeteer, { type Browser } from 'puppeteer-core'

/** Debian's chromium: the tests drive it, and never download a browser of their own. */
export const CHROMIUM = '/usr/bin/chromium'

const INSTALL_TIMEOUT_MS = 900_000

/**
 * Installs Debian's chromium when it is missing and this runs as root (the README's one test
 * command then sets up a fresh machine); otherwise says in one line what to install.
 */
export function ensureChromium (): void {
  if (existsSync(CHROMIUM)) return
  if (process.getuid?.() !== 0) throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (sudo apt-get install -y chromium) and run the tests again`)
  for (const args of [['update'], ['install', '-y', '--no-install-recommends', 'chromium']]) {
    const result = spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: INSTALL_TIMEOUT_MS, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
    if (result.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed (${result.error?.message ?? `exit ${String(result.status)}`}): ${result.stderr.trim().split('\n').at(-1) ?? ''}`)
  }
  if (!existsSync(CHROMIUM)) throw new Error(`apt-get installed chromium but ${CHROMIUM} is still missing`)
}

/** Headless chromium with a fresh profile, nothing fetched in the background, QUIC off; `close` also removes the profile. */
export async function launchChromium (): Promise<{ browser: Browser, close: () => Promise<void> }> {
  ensureChromium()
  const profile = await mkdtemp(join(tmpdir(), 'llmesh-chromium-'))
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`]
  })
  return {
    browser,
    close: async () => {
      await browser.close().catch(() => {})
      await rm(profile, { recursive: true, force: true })
    }
  }
}
