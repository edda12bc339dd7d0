// The coordinator keeps the whole output head, whatever the architecture puts in it: checked on
// a phi2 model (whose head has output_norm.bias and output.bias, which a fixed list of
// overrides misses) from llama-server's own logs: where each tensor was placed, and where the
// graph scheduler runs each node and which tensors it sends to each device.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SupervisedProcess } from '../engine/child-process.js'
import { freePort } from '../engine/free-port.js'
import { writeGgufFile } from '../engine/gguf/index.js'
import { findLlamaCppTools, llamaCppToolEnv, type LlamaCppTools } from '../engine/llama-cpp/tools.js'
import { readModelFacts } from '../engine/model-facts.js'
import { syntheticPhi2Content } from '../engine/synthetic-model/phi2-model.js'
import { parseStages, planFromStages, renderLlamaServerArgs } from '../scheduler/index.js'

const GiB = 1024 ** 3
const START_TIMEOUT_MS = 120_000

/** One tensor as ggml's scheduler debug output names it (at most 20 characters) and the device it is on. */
interface Placed { name: string, device: string }

/** What GGML_SCHED_DEBUG=2 printed: every graph node with its sources, every split's device and inputs. */
interface ScheduleLog {
  nodes: Array<{ node: Placed, sources: Placed[] }>
  splits: Array<{ device: string, inputs: string[] }>
}

// llama-server prefixes each piece of a log line with its time and level ("0.00.045.160 D ").
const LOG_PREFIX = /\d+\.\d{2}\.\d{3}\.\d{3} [DIWE] /g
// ggml prints a tensor as "%20.20s (%5.5s) [%5.5s %8.8s]": name, size, device, cause.
const TENSOR = /(.{20}) \(.{5}\) \[(.{5}) .{8}\]/g

function parseScheduleLog (lines: readonly string[]): ScheduleLog {
  const log: ScheduleLog = { nodes: [], splits: [] }
  for (const line of lines.map(text => text.replace(LOG_PREFIX, ''))) {
    const split = /^## SPLIT #\d+: (\S+) # \d+ inputs(.*)$/.exec(line)
    if (split !== null) {
      log.splits.push({ device: split[1], inputs: [...split[2].matchAll(/\[(\S+) \(/g)].map(match => match[1]) })
      continue
    }
    if (!line.startsWith('node #')) continue
    const [node, ...sources] = [...line.matchAll(TENSOR)].map(match => ({ name: match[1].trim(), device: match[2].trim() }))
    if (node !== undefined) log.nodes.push({ node, sources })
  }
  return log
}

async function accepts (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const socket = createConnection({ host: '127.0.0.1', port })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => { resolve(false) })
  })
}

describe('the output head of a model with head biases', () => {
  let tools: LlamaCppTools
  let dir: string
  const running: SupervisedProcess[] = []

  before(async () => {
    tools = await findLlamaCppTools()
    dir = await mkdtemp(join(tmpdir(), 'llmesh-head-placement-'))
  })

  after(async () => {
    await Promise.all(running.map(async child => await child.stop()))
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('stays on the coordinator: no head tensor and no logits reach a worker', async () => {
    const modelPath = join(dir, 'phi2.gguf')
    await writeGgufFile(modelPath, syntheticPhi2Content({ layers: 4, embd: 256, ff: 1024, heads: 8, kvHeads: 8, ctx: 512, type: 'f16', seed: 2 }))
    const facts = await readModelFacts(modelPath)
    const head = facts.outsideLayerTensors.filter(name => name !== 'token_embd.weight')
    assert.deepEqual([...head].sort(), ['output.bias', 'output.weight', 'output_norm.bias', 'output_norm.weight'])
    const plan = planFromStages({ model: facts, coordinator: { id: 'coordinator', offeredBytes: GiB, speed: 1 }, workers: [{ id: 'worker', offeredBytes: GiB, speed: 1 }], contextSize: 512 }, parseStages('0,1-3'))

    const port = await freePort()
    const rpc = SupervisedProcess.spawn({ name: 'rpc-server', command: tools.rpcServer, args: ['-H', '127.0.0.1', '-p', String(port), '-t', '1'] })
    running.push(rpc)
    await rpc.waitUntil(async () => await accepts(port), { timeoutMs: START_TIMEOUT_MS })
    const args = ['-m', modelPath, '--host', '127.0.0.1', '--port', String(await freePort()), '-t', '1', '--verbose', ...renderLlamaServerArgs(plan, { worker: `127.0.0.1:${port}` })]
    // The warm-up decode, done before llama-server listens, prints the schedule of a whole graph.
    const server = SupervisedProcess.spawn({ name: 'llama-server', command: tools.llamaServer, args, env: llamaCppToolEnv({ GGML_SCHED_DEBUG: '2' }), keepLines: 1_000_000 })
    running.push(server)
    await server.waitForLine(/listening on/, { timeoutMs: START_TIMEOUT_MS })

    const overridden = new Set(server.recentOutput.map(line => /tensor (\S+) \(.*\) buffer type overridden to CPU/.exec(line)?.[1]))
    for (const name of facts.outsideLayerTensors) assert.ok(overridden.has(name), `llama-server did not keep ${name} on the CPU`)

    const log = parseScheduleLog(server.recentOutput)
    assert.ok(log.splits.some(split => split.device.startsWith('RPC0')), 'the worker computes some of the graph')
    // Names in the schedule are cut to 20 characters; the logits are the result_* nodes.
    const headNames = new Set(head.map(name => name.slice(0, 20)))
    const isHead = (name: string): boolean => headNames.has(name) || name.startsWith('result_')
    let seen = 0
    for (const { node, sources } of log.nodes) {
      for (const tensor of [node, ...sources].filter(placed => isHead(placed.name))) {
        seen++
        assert.equal(tensor.device, 'CPU', `${tensor.name} is on ${tensor.device} (node ${node.name})`)
      }
    }
    assert.ok(seen >= 4 * 2, `the schedule names the head's tensors and the logits (${seen} mentions)`)
    for (const split of log.splits.filter(s => s.device.startsWith('RPC'))) {
      const leaked = split.inputs.filter(isHead)
      assert.deepEqual(leaked, [], `the worker's split receives ${leaked.join(', ')}`)
    }
  })
})
