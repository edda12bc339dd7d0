import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { useLocalEngine } from '../engine/test-support/local-engine-fixture.js'
import { createApiServer } from './server.js'
import { startTestApi, type TestApi } from './test-support/api-client.js'

interface ErrorBody { error: { message: string, type: string, param: string | null, code: string | null } }

describe('the API\'s protections', () => {
  const local = useLocalEngine()

  async function withApi (options: Parameters<typeof startTestApi>[1], test: (api: TestApi) => Promise<void>): Promise<void> {
    const api = await startTestApi(local.engine, options)
    try {
      await test(api)
    } finally {
      await api.close()
    }
  }

  it('sends security headers on every response, errors included', async () => {
    await withApi({}, async api => {
      const responses = [
        await fetch(`${api.url}/health`),
        await fetch(`${api.url}/v1/models`, { headers: { authorization: `Bearer ${api.apiKey}` } }),
        await fetch(`${api.url}/v1/models`),
        await fetch(`${api.url}/nowhere`),
        await api.post('/v1/completions', { model: api.modelName, prompt: 'Hi', max_tokens: 2, stream: true })
      ]
      for (const response of responses) {
        const where = `${response.url} (${response.status})`
        assert.equal(response.headers.get('x-content-type-options'), 'nosniff', where)
        assert.equal(response.headers.get('x-frame-options'), 'SAMEORIGIN', where)
        assert.equal(response.headers.get('content-security-policy'), "default-src 'none';frame-ancestors 'none'", where)
        assert.equal(response.headers.get('cache-control'), response.headers.get('content-type')?.startsWith('text/event-stream') === true ? 'no-cache' : 'no-store', where)
        assert.equal(response.headers.get('access-control-allow-origin'), null, where)
        await response.arrayBuffer()
      }
    })
  })

  it('takes a page of its own origin (the dashboard) as no cross-origin caller, and one of the same host on another port as one', async () => {
    await withApi({}, async api => {
      const own = await fetch(`${api.url}/v1/models`, { headers: { authorization: `Bearer ${api.apiKey}`, origin: api.url } })
      assert.equal(own.status, 200)
      assert.equal(own.headers.get('access-control-allow-origin'), null)
      const url = new URL(api.url)
      const otherPort = `${url.protocol}//${url.hostname}:${Number(url.port) + 1}`
      assert.equal((await fetch(`${api.url}/v1/models`, { headers: { authorization: `Bearer ${api.apiKey}`, origin: otherPort } })).status, 403)
    })
  })

  it('refuses cross-origin requests unless their origin is configured', async () => {
    const page = 'https://chat.example.lan'
    await withApi({}, async api => {
      const refused = await fetch(`${api.url}/v1/models`, { headers: { authorization: `Bearer ${api.apiKey}`, origin: page } })
      assert.equal(refused.status, 403)
      const body = await refused.json() as ErrorBody
      assert.equal(body.error.code, 'origin_not_allowed')
      assert.match(body.error.message, /--cors-origin https:\/\/chat\.example\.lan/)
      const preflight = await fetch(`${api.url}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin: page, 'access-control-request-method': 'POST' } })
      assert.equal(preflight.status, 403)
    })
    await withApi({ corsOrigins: [page] }, async api => {
      const preflight = await fetch(`${api.url}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin: page, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } })
      assert.equal(preflight.status, 204)
      assert.equal(preflight.headers.get('access-control-allow-origin'), page)
      const allowed = await fetch(`${api.url}/v1/models`, { headers: { authorization: `Bearer ${api.apiKey}`, origin: page } })
      assert.equal(allowed.status, 200)
      assert.equal(allowed.headers.get('access-control-allow-origin'), page)
      const other = await fetch(`${api.url}/v1/models`, { headers: { authorization: `Bearer ${api.apiKey}`, origin: 'https://evil.example' } })
      assert.equal(other.status, 403)
    })
  })

  it('limits requests per API key, with 429 and Retry-After past the limit', async () => {
    const otherKey = 'sk-mesh-other-key'
    const keys = { verify: (key: string) => key === otherKey ? 'key_other' : null }
    await withApi({ keys, rateLimits: { perKey: 2, perIp: 0, windowMs: 60_000 } }, async api => {
      const get = async (key: string): Promise<Response> => await fetch(`${api.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })
      assert.equal((await get(api.apiKey)).status, 200)
      assert.equal((await get(api.apiKey)).status, 200)
      const limited = await get(api.apiKey)
      assert.equal(limited.status, 429)
      assert.ok(Number(limited.headers.get('retry-after')) > 0)
      const body = await limited.json() as ErrorBody
      assert.deepEqual([body.error.type, body.error.code], ['rate_limit_error', 'rate_limit_exceeded'])
      // Another key from the same address has its own budget.
      assert.equal((await get(otherKey)).status, 200)
    })
  })

  it('limits requests per client address before checking the key', async () => {
    await withApi({ rateLimits: { perKey: 0, perIp: 2, windowMs: 60_000 } }, async api => {
      const get = async (key: string): Promise<Response> => await fetch(`${api.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })
      assert.equal((await get('guess-1')).status, 401)
      assert.equal((await get('guess-2')).status, 401)
      const limited = await get(api.apiKey)
      assert.equal(limited.status, 429)
      assert.ok(Number(limited.headers.get('retry-after')) > 0)
    })
  })

  it('accepts further keys besides the default one and tells which key a request used', async () => {
    const keys = { verify: (key: string) => key === 'sk-mesh-second' ? 'key_second' : null }
    const app = await createApiServer({ engine: local.engine, apiKey: 'the-default-key', keys, modelName: 'm' })
    try {
      const seen: Array<string | null> = []
      app.addHook('onResponse', async request => { seen.push(request.apiKeyId) })
      for (const key of ['sk-mesh-second', 'the-default-key', 'sk-mesh-unknown']) {
        await app.inject({ method: 'GET', url: '/v1/models', headers: { authorization: `Bearer ${key}` } })
      }
      assert.deepEqual(seen, ['key_second', 'default', null])
    } finally {
      await app.close()
    }
  })
})
