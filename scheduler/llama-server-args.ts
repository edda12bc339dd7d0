import { InvalidPlanInputError } from './errors.js'
import { MICRO_BATCH_TOKENS } from './memory.js'
import type { StagePlan } from './types.js'

// Anchored: unanchored, `output\.weight` also matches every `blk.N.attn_output.weight`.
const OUTPUT_NORM_ON_CPU = '^output_norm\\.weight$=CPU'
const OUTPUT_ON_CPU = '^output\\.weight$=CPU'
// With tied embeddings llama.cpp loads the head as a second copy of `token_embd.weight`,
// placed like the output layer; this override keeps that copy on the coordinator.
const TIED_OUTPUT_ON_CPU = '^token_embd\\.weight$=CPU'

/**
 * The llama-server arguments that realise a plan (all but the model, threads and listening
 * address): context and slots, `--rpc` with the
 * workers' endpoints (the tunnel listeners, keyed by node id) in pipeline order, `--device`
 * pinning the RPC devices, `-ngl` leaving the coordinator's layers on its CPU together with
 * their KV cache, `--tensor-split` in whole layers (exact, no float boundary rounding) and
 * `--override-tensor` keeping the output head on the coordinator. Assumes each rpc-server
 * exposes one device (the CPU rpc-server llmesh starts), so the i-th worker is device RPCi.
 */
export function renderLlamaServerArgs (plan: StagePlan, rpcEndpoints: Readonly<Record<string, string>>): string[] {
  // --fit off: llama-server must not move layers on its own. Flash attention and the micro-batch
  // size are what the compute-buffer margin (memory.ts) was measured with.
  const args = [
    '--ctx-size', String(plan.contextSize), '--parallel', String(plan.parallel), '--kv-unified',
    '--fit', 'off', '--flash-attn', 'on', '--ubatch-size', String(MICRO_BATCH_TOKENS)
  ]
  if (plan.kvCacheType !== 'f16') args.push('--cache-type-k', plan.kvCacheType, '--cache-type-v', plan.kvCacheType)
  const [coordinator, ...workers] = plan.stages
  if (workers.length === 0) return [...args, '--n-gpu-layers', '0']

  const endpoints = workers.map(stage => {
    const endpoint = rpcEndpoints[stage.nodeId]
    if (endpoint == null || endpoint === '') throw new InvalidPlanInputError(`no RPC endpoint was given for worker ${stage.nodeId}; pass its tunnel listener's host:port`)
    return endpoint
  })
  // llama.cpp offloads the last n_gpu_layers of its n_layer + 1 "layers" (the output head
  // counts as the last one), splitting them over the devices in proportion to the split
  // values. Giving each device its layer count, plus one on the last for the head's slot,
  // puts every boundary exactly where the plan has it.
  const split = workers.map(stage => stage.layerCount)
  split[split.length - 1] += 1
  const outputOverrides = [plan.tiedEmbeddings ? TIED_OUTPUT_ON_CPU : OUTPUT_ON_CPU, OUTPUT_NORM_ON_CPU]
  return [
    ...args,
    '--rpc', endpoints.join(','),
    '--device', workers.map((_, index) => `RPC${index}`).join(','),
    '--n-gpu-layers', String(plan.layerCount + 1 - coordinator.layerCount),
    '--tensor-split', split.join(','),
    '--override-tensor', outputOverrides.join(',')
  ]
}
