import { InvalidPlanInputError } from './errors.js'
import { MICRO_BATCH_TOKENS } from './memory.js'
import type { StagePlan } from './types.js'

/**
 * The `--override-tensor` entry that keeps exactly the tensor `name` on the coordinator's CPU.
 * Anchored: unanchored, `output\.weight` also matches every `blk.N.attn_output.weight`. llama.cpp
 * splits the list at ',' and each entry at its first '=', so those match as any character.
 */
function keptOnCpu (name: string): string {
  return `^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/[,=]/g, '.')}$=CPU`
}

/**
 * The llama-server arguments that realise a plan (all but the model, threads and listening
 * address): context and slots, `--rpc` with the
 * workers' endpoints (the tunnel listeners, keyed by node id) in pipeline order, `--device`
 * pinning the RPC devices, `-ngl` leaving the coordinator's layers on its CPU together with
 * their KV cache, `--tensor-split` in whole layers (exact, no float boundary rounding) and
 * `--override-tensor` keeping every tensor outside the layers on the coordinator: the output head
 * whatever it holds (weights, norms, biases; with tied embeddings, the copy of `token_embd.weight`
 * llama.cpp places like the output layer), so no worker computes or sees logits. Assumes each rpc-server
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
  const placement = [
    ...args,
    '--rpc', endpoints.join(','),
    '--device', workers.map((_, index) => `RPC${index}`).join(','),
    '--n-gpu-layers', String(plan.layerCount + 1 - coordinator.layerCount),
    '--tensor-split', split.join(',')
  ]
  return plan.coordinatorTensors.length > 0 ? [...placement, '--override-tensor', plan.coordinatorTensors.map(keptOnCpu).join(',')] : placement
}
