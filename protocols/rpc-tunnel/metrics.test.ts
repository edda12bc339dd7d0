import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Registry } from 'prom-client'
import { RpcTunnelMetrics } from './metrics.js'

async function sample (registry: Registry, name: string, labels: string): Promise<number | undefined> {
  const line = (await registry.metrics()).split('\n').find(l => l.startsWith(`${name}{${labels}} `))
  return line === undefined ? undefined : Number(line.split(' ')[1])
}

describe('rpc tunnel metrics', () => {
  it('shows every command recorded before a scrape, however many a worker recorded without one', async () => {
    const registry = new Registry()
    const metrics = new RpcTunnelMetrics(registry)
    metrics.command('get_tensor', 312, 4096, 0.0002)
    metrics.command('graph_compute', 10_000, 0, 0.003)
    assert.equal(await sample(registry, 'llmesh_rpc_command_duration_seconds_count', 'command="get_tensor"'), 1)
    assert.equal(await sample(registry, 'llmesh_rpc_command_duration_seconds_bucket', 'le="0.005",command="graph_compute"'), 1)
    assert.equal(await sample(registry, 'llmesh_rpc_command_duration_seconds_bucket', 'le="0.001",command="graph_compute"'), 0)
    assert.equal(await sample(registry, 'llmesh_rpc_response_bytes_total', 'command="get_tensor"'), 4096)
    assert.equal(await sample(registry, 'llmesh_rpc_largest_request_bytes', 'command="graph_compute"'), 10_000)

    // Thousands of tokens' commands between two scrapes: none is lost, none counted twice.
    for (let i = 0; i < 5000; i++) metrics.command('get_tensor', 312, 4096, 0.0002)
    metrics.command('get_tensor', 400, 8, 0.0002)
    assert.equal(await sample(registry, 'llmesh_rpc_command_duration_seconds_count', 'command="get_tensor"'), 5002)
    assert.equal(await sample(registry, 'llmesh_rpc_request_bytes_total', 'command="get_tensor"'), 5001 * 312 + 400)
    assert.equal(await sample(registry, 'llmesh_rpc_largest_request_bytes', 'command="get_tensor"'), 400)
    assert.equal(await sample(registry, 'llmesh_rpc_command_duration_seconds_count', 'command="get_tensor"'), 5002)
  })
})
