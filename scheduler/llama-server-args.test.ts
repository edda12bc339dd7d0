import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { renderLlamaServerArgs } from './llama-server-args.js'
import { parseStages, planFromStages } from './stages-override.js'
import { InvalidPlanInputError } from './errors.js'
import type { ModelFacts, PlanInput } from './types.js'

const model: ModelFacts = {
  layerCount: 16,
  layerWeightBytes: new Array<number>(16).fill(1 << 20),
  layerLargestTensorBytes: new Array<number>(16).fill(1 << 18),
  embeddingBytes: 1 << 20,
  outputHeadBytes: 1 << 20,
  tiedEmbeddings: false,
  outsideLayerTensors: ['token_embd.weight', 'output_norm.weight', 'output.weight'],
  kvValuesPerTokenPerLayer: new Array<number>(16).fill(512),
  embeddingLength: 512,
  vocabSize: 1000,
  largestTensorBytes: 1 << 20
}
const GiB = 1 << 30
const input: PlanInput = {
  model,
  coordinator: { id: 'c', offeredBytes: GiB, speed: 1 },
  workers: [{ id: 'w1', offeredBytes: GiB, speed: 1 }, { id: 'w2', offeredBytes: GiB, speed: 1 }],
  contextSize: 2048,
  parallel: 2
}
const endpoints = { w1: '127.0.0.1:5001', w2: '127.0.0.1:5002' }

// The value following a flag.
const flag = (args: string[], name: string): string | undefined => {
  const index = args.indexOf(name)
  return index === -1 ? undefined : args[index + 1]
}

describe('renderLlamaServerArgs', () => {
  it('keeps the coordinator\'s layers local and splits the rest over the workers in whole layers', () => {
    const args = renderLlamaServerArgs(planFromStages(input, parseStages('0-2,3-9,10-15')), endpoints)
    assert.equal(flag(args, '--rpc'), '127.0.0.1:5001,127.0.0.1:5002')
    assert.equal(flag(args, '--device'), 'RPC0,RPC1')
    // 17 "layers" (16 + output head), the first 3 stay on the CPU.
    assert.equal(flag(args, '--n-gpu-layers'), '14')
    // 7 layers on RPC0; 6 layers plus the output head's slot on RPC1.
    assert.equal(flag(args, '--tensor-split'), '7,7')
    assert.equal(flag(args, '--override-tensor'), '^token_embd\\.weight$=CPU,^output_norm\\.weight$=CPU,^output\\.weight$=CPU')
    assert.equal(flag(args, '--ctx-size'), '2048')
    assert.equal(flag(args, '--parallel'), '2')
    assert.ok(args.includes('--kv-unified'))
    assert.equal(flag(args, '--fit'), 'off')
    assert.equal(flag(args, '--flash-attn'), 'on')
    assert.equal(flag(args, '--ubatch-size'), '512')
  })

  it('puts the split boundaries exactly where llama.cpp\'s float32 device rule reads them, for every split', () => {
    // llama.cpp (load_tensors) offloads the last n of its n_layer + 1 slots and gives slot p
    // (0-based among them) to the first device whose cumulative split fraction exceeds p / n,
    // all in float32; replay that rule for every split of 40 layers over three workers.
    const layerCount = 40
    const big = { ...model, layerCount, layerWeightBytes: new Array<number>(layerCount).fill(1), kvValuesPerTokenPerLayer: new Array<number>(layerCount).fill(1) }
    const workers = ['w1', 'w2', 'w3'].map(id => ({ id, offeredBytes: GiB, speed: 1 }))
    const allEndpoints = { w1: 'h:1', w2: 'h:2', w3: 'h:3' }
    let checked = 0
    for (const local of [0, 1, 7]) {
      for (let a = 1; a < layerCount - local - 1; a++) {
        for (let b = 1; a + b < layerCount - local; b++) {
          const counts = [local, a, b, layerCount - local - a - b]
          let next = 0
          const ranges = counts.map(count => { next += count; return count === 0 ? null : { first: next - count, last: next - 1 } })
          const plan = planFromStages({ ...input, model: big, workers, privacy: local === 0 ? 'off' : 'on' }, ranges)
          const args = renderLlamaServerArgs(plan, allEndpoints)
          const split = (flag(args, '--tensor-split') ?? '').split(',').map(Number)
          const offloaded = Number(flag(args, '--n-gpu-layers'))
          const sum = split.reduce((x, y) => Math.fround(x + y), 0)
          let running = 0
          const edges = split.map(value => { running = Math.fround(running + value); return Math.fround(running / sum) })
          const start = layerCount + 1 - offloaded
          assert.equal(start, local)
          plan.stages.slice(1).forEach((stage, device) => {
            for (let layer = stage.firstLayer; layer < stage.firstLayer + stage.layerCount; layer++) {
              const fraction = Math.fround(Math.fround(layer - start) / offloaded)
              assert.equal(edges.findIndex(edge => edge > fraction), device, `layer ${layer} of split ${counts.join('/')}`)
            }
          })
          checked++
        }
      }
    }
    assert.ok(checked > 1500)
  })

  it('lets workers take layer 0 under privacy off but keeps the head on the coordinator', () => {
    const args = renderLlamaServerArgs(planFromStages({ ...input, privacy: 'off' }, parseStages('none,0-7,8-15')), endpoints)
    assert.equal(flag(args, '--n-gpu-layers'), '17')
    assert.equal(flag(args, '--tensor-split'), '8,9')
    assert.match(flag(args, '--override-tensor') ?? '', /\^output\\.weight\$=CPU/)
  })

  it('keeps the tied head (a copy of token_embd) on the coordinator', () => {
    const tied = { ...input, model: { ...model, tiedEmbeddings: true, outsideLayerTensors: ['token_embd.weight', 'output_norm.weight'] } }
    const args = renderLlamaServerArgs(planFromStages(tied, parseStages('0-2,3-9,10-15')), endpoints)
    assert.equal(flag(args, '--override-tensor'), '^token_embd\\.weight$=CPU,^output_norm\\.weight$=CPU')
  })

  it('keeps every tensor the model holds outside the layers on the coordinator, and only those', () => {
    // phi2's head: weights and biases of the output and its norm.
    const names = ['token_embd.weight', 'output_norm.weight', 'output_norm.bias', 'output.weight', 'output.bias', 'odd+name,with=separators']
    const args = renderLlamaServerArgs(planFromStages({ ...input, model: { ...model, outsideLayerTensors: names } }, parseStages('0-2,3-9,10-15')), endpoints)
    const entries = (flag(args, '--override-tensor') ?? '').split(',')
    assert.equal(entries.length, names.length, 'a name\'s separators must not split the list')
    // Read as llama.cpp does: split at the first '=', then an ECMAScript regex search.
    const patterns = entries.map(entry => {
      const [pattern, device] = [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]
      assert.equal(device, 'CPU')
      return new RegExp(pattern)
    })
    for (const name of names) assert.ok(patterns.some(pattern => pattern.test(name)), `${name} stays on the coordinator`)
    for (const name of ['blk.3.attn_output.weight', 'blk.3.attn_output.bias', 'output.weight.extra', 'xoutput.bias']) {
      assert.ok(!patterns.some(pattern => pattern.test(name)), `${name} is placed with its layer`)
    }
  })

  it('runs everything locally for a single-node plan', () => {
    const args = renderLlamaServerArgs(planFromStages(input, parseStages('0-15')), {})
    assert.equal(flag(args, '--n-gpu-layers'), '0')
    assert.equal(flag(args, '--rpc'), undefined)
    assert.equal(flag(args, '--override-tensor'), undefined)
  })

  it('passes a non-default KV-cache type and refuses a worker without an endpoint', () => {
    const plan = planFromStages({ ...input, kvCacheType: 'f32' }, parseStages('0-2,3-9,10-15'))
    const args = renderLlamaServerArgs(plan, endpoints)
    assert.equal(flag(args, '--cache-type-k'), 'f32')
    assert.equal(flag(args, '--cache-type-v'), 'f32')
    assert.throws(() => renderLlamaServerArgs(plan, { w1: '127.0.0.1:5001' }), InvalidPlanInputError)
  })
})
