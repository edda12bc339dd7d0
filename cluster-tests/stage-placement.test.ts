// Checks against the real llama-server that a rendered stage plan puts exactly the planned
// layers, their KV cache and the output head where the plan says, within the planned memory.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SupervisedProcess } from '../engine/child-process.js'
import { writeGgufFile } from '../engine/gguf/index.js'
import { findLlamaCppTools, type LlamaCppTools } from '../engine/llama-cpp/tools.js'
import { readModelFacts } from '../engine/model-facts.js'
import { syntheticModelContent } from '../engine/synthetic-model/index.js'
import { parseStages, planFromStages, planStages, renderLlamaServerArgs, type PlanInput, type StagePlan } from '../scheduler/index.js'
import { freePort } from '../engine/free-port.js'

const MiB = 1024 * 1024
const GiB = 1024 * MiB
const START_TIMEOUT_MS = 120_000

/** What llama-server reported while loading: devices per layer and buffer sizes per device. */
interface LoadReport {
  layerDevice: Map<number, string>
  kvDevice: Map<number, string>
  overriddenToCpu: Set<string>
  /** bytes per device ("CPU", "RPC0", ...) and buffer kind ("model", "KV", "compute", "output") */
  buffers: Map<string, Map<string, number>>
}

async function accepts (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const socket = createConnection({ host: '127.0.0.1', port })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => { resolve(false) })
  })
}

function parseLoadLog (lines: readonly string[], endpoints: readonly string[]): LoadReport {
  const report: LoadReport = { layerDevice: new Map(), kvDevice: new Map(), overriddenToCpu: new Set(), buffers: new Map() }
  // Every RPC buffer is named "RPC0[host:port]" (device index within its server), so the endpoint tells them apart.
  const deviceOf = (name: string): string => {
    const endpoint = /\[(.+)\]/.exec(name)?.[1]
    return endpoint != null ? `RPC${endpoints.indexOf(endpoint)}` : name.replace('_Mapped', '')
  }
  for (const line of lines) {
    let match = /load_tensors: layer\s+(\d+) assigned to device (\w+)/.exec(line)
    if (match != null) report.layerDevice.set(Number(match[1]), match[2])
    match = /llama_kv_cache: layer\s+(\d+): dev = (\w+)/.exec(line)
    if (match != null) report.kvDevice.set(Number(match[1]), match[2])
    match = /tensor (\S+) \(.*\) buffer type overridden to CPU/.exec(line)
    if (match != null) report.overriddenToCpu.add(match[1])
    match = /\s(\S+)\s+(model|KV|compute|output) buffer size =\s+([\d.]+) MiB/.exec(line)
    if (match != null) {
      const device = deviceOf(match[1])
      const kinds = report.buffers.get(device) ?? new Map<string, number>()
      kinds.set(match[2], (kinds.get(match[2]) ?? 0) + Number(match[3]) * MiB)
      report.buffers.set(device, kinds)
    }
  }
  return report
}

describe('stage plans on a real llama-server', () => {
  let tools: LlamaCppTools
  let dir: string
  const running: SupervisedProcess[] = []

  before(async () => {
    tools = await findLlamaCppTools()
    dir = await mkdtemp(join(tmpdir(), 'llmesh-stage-placement-'))
  })

  after(async () => {
    await Promise.all(running.map(async child => await child.stop()))
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  async function writeModel (name: string, tied: boolean): Promise<string> {
    const path = join(dir, name)
    const content = syntheticModelContent({ layers: 8, embd: 256, ff: 512, heads: 4, kvHeads: 2, ctx: 2048, type: 'f16', seed: 3 })
    await writeGgufFile(path, { metadata: content.metadata, tensors: tied ? content.tensors.filter(t => t.name !== 'output.weight') : content.tensors })
    return path
  }

  /** Starts one rpc-server per worker stage and llama-server with the plan's arguments; returns its load report. */
  async function load (modelPath: string, plan: StagePlan): Promise<LoadReport> {
    const workers = plan.stages.slice(1)
    const endpoints: Record<string, string> = {}
    const children: SupervisedProcess[] = []
    try {
      for (const stage of workers) {
        const port = await freePort()
        const rpc = SupervisedProcess.spawn({ name: `rpc-server ${stage.nodeId}`, command: tools.rpcServer, args: ['-H', '127.0.0.1', '-p', String(port), '-t', '1'] })
        children.push(rpc)
        running.push(rpc)
        await rpc.waitUntil(async () => await accepts(port), { timeoutMs: START_TIMEOUT_MS })
        endpoints[stage.nodeId] = `127.0.0.1:${port}`
      }
      const args = ['-m', modelPath, '--host', '127.0.0.1', '--port', String(await freePort()), '-t', '1', '--verbose', ...renderLlamaServerArgs(plan, endpoints)]
      const server = SupervisedProcess.spawn({ name: 'llama-server', command: tools.llamaServer, args, keepLines: 100_000 })
      children.push(server)
      running.push(server)
      await server.waitForLine(/listening on/, { timeoutMs: START_TIMEOUT_MS })
      return parseLoadLog(server.recentOutput, workers.map(stage => endpoints[stage.nodeId]))
    } finally {
      await Promise.all(children.reverse().map(async child => await child.stop()))
    }
  }

  function assertPlacement (plan: StagePlan, report: LoadReport, headTensors: readonly string[]): void {
    plan.stages.forEach((stage, index) => {
      const device = index === 0 ? 'CPU' : `RPC${index - 1}`
      for (let layer = stage.firstLayer; layer < stage.firstLayer + stage.layerCount; layer++) {
        assert.equal(report.layerDevice.get(layer), device, `weights of layer ${layer}`)
        assert.equal(report.kvDevice.get(layer), device, `KV cache of layer ${layer}`)
      }
      const buffers = report.buffers.get(device)
      assert.ok(buffers != null, `no buffers reported for ${device}`)
      // Reported sizes are rounded to 0.01 MiB.
      const rounding = 0.01 * MiB
      assert.ok(Math.abs((buffers.get('KV') ?? 0) - stage.memory.kvCacheBytes) <= rounding, `KV cache on ${device}`)
      const used = [...buffers.values()].reduce((sum, bytes) => sum + bytes, 0)
      assert.ok(used <= stage.memory.totalBytes, `${device} uses ${used} bytes, the plan allows ${stage.memory.totalBytes}`)
      assert.ok((buffers.get('compute') ?? 0) <= stage.memory.computeBytes, `compute buffer on ${device}`)
    })
    for (const tensor of headTensors) assert.ok(report.overriddenToCpu.has(tensor), `${tensor} stays on the coordinator`)
  }

  it('realises an automatic plan for heterogeneous nodes with layer 0 and the head on the coordinator', async () => {
    const modelPath = await writeModel('untied.gguf', false)
    const input: PlanInput = {
      model: await readModelFacts(modelPath),
      coordinator: { id: 'coordinator', offeredBytes: GiB, speed: 1 },
      workers: [{ id: 'fast', offeredBytes: GiB, speed: 2 }, { id: 'slow', offeredBytes: GiB, speed: 1 }],
      contextSize: 2048,
      parallel: 2
    }
    const plan = planStages(input)
    assert.deepEqual(plan.stages.map(stage => stage.layerCount), [2, 4, 2])
    assertPlacement(plan, await load(modelPath, plan), ['output.weight', 'output_norm.weight'])
  })

  it('realises a --stages override under privacy off with tied embeddings, the head still local', async () => {
    const modelPath = await writeModel('tied.gguf', true)
    const input: PlanInput = {
      model: await readModelFacts(modelPath),
      coordinator: { id: 'coordinator', offeredBytes: GiB, speed: 1 },
      workers: [{ id: 'a', offeredBytes: GiB, speed: 1 }, { id: 'b', offeredBytes: GiB, speed: 1 }],
      contextSize: 1024,
      privacy: 'off'
    }
    const plan = planFromStages(input, parseStages('none,0-2,3-7'))
    const report = await load(modelPath, plan)
    assertPlacement(plan, report, ['token_embd.weight', 'output_norm.weight'])
    assert.equal(report.buffers.get('CPU')?.get('KV') ?? 0, 0, 'no KV cache on the coordinator')
  })
})
