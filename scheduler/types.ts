/** What the scheduler needs to know about a model, read from its GGUF file (engine/model-facts.ts). */
export interface ModelFacts {
  /** number of repeating layers (`<arch>.block_count`) */
  layerCount: number
  /** bytes of each layer's weights: the sum of its `blk.N.*` tensors, index = layer */
  layerWeightBytes: readonly number[]
  /** bytes of each layer's largest single tensor, index = layer: it bounds the RPC messages of a stage */
  layerLargestTensorBytes: readonly number[]
  /** bytes of `token_embd.weight`; llama.cpp always keeps it on the host running llama-server */
  embeddingBytes: number
  /** bytes of the output head: every tensor outside the layers but `token_embd.weight` (output, its norm, biases...) */
  outputHeadBytes: number
  /** true when the model has no `output.weight` and llama.cpp reuses `token_embd.weight` as the head */
  tiedEmbeddings: boolean
  /**
   * names of the tensors the file holds outside the repeating layers (`blk.N.*`): the embedding,
   * the output head (weights, norms, biases) and whatever else the architecture adds. The
   * coordinator keeps every one of them, so no worker computes or sees the logits.
   */
  outsideLayerTensors: readonly string[]
  /** K plus V values cached per token for each layer (n_embd_k_gqa + n_embd_v_gqa), index = layer */
  kvValuesPerTokenPerLayer: readonly number[]
  /** hidden size (`<arch>.embedding_length`), sizes the compute buffers */
  embeddingLength: number
  /** vocabulary size, sizes the logits buffer */
  vocabSize: number
  /** bytes of the largest single tensor, which bounds one RPC message carrying weights */
  largestTensorBytes: number
}

/** One member's offer to the cluster. */
export interface NodeOffer {
  /** the member's id (its PeerId, or a name in tests); shown in the plan table */
  id: string
  /** bytes of memory the member lends to the model: weights, KV cache and compute buffers */
  offeredBytes: number
  /** measured speed in any unit common to all members (e.g. tokens/s of a probe); only ratios matter */
  speed: number
}

/** KV-cache element types the planner can size (llama-server `--cache-type-k/-v`). */
export type KvCacheType = 'f16' | 'bf16' | 'f32'

/** `on` keeps the first layer and the output head on the coordinator; `off` lets workers take layer 0. */
export type PrivacyMode = 'on' | 'off'

/** Everything a plan depends on. */
export interface PlanInput {
  model: ModelFacts
  /** the node that runs llama-server; it always holds the embedding and the output head */
  coordinator: NodeOffer
  /** the workers, in pipeline order (the order of `--rpc`) */
  workers: readonly NodeOffer[]
  /** llama-server `-c`: total context shared by all parallel slots, in tokens */
  contextSize: number
  /** llama-server `-np`: parallel slots (default 1) */
  parallel?: number
  /** KV-cache type (default `f16`) */
  kvCacheType?: KvCacheType
  /** privacy mode (default `on`: the coordinator keeps at least one layer) */
  privacy?: PrivacyMode
}

/** What one node stores, in bytes. */
export interface StageMemory {
  /** weights of the stage's layers */
  weightBytes: number
  /** KV cache of the stage's layers for the whole context */
  kvCacheBytes: number
  /** embedding and output head (coordinator only) */
  embeddingAndHeadBytes: number
  /** the documented margin for llama.cpp's compute buffers (see memory.ts) */
  computeBytes: number
  /** sum of the above */
  totalBytes: number
}

/** One pipeline stage: a contiguous range of layers on one node. */
export interface Stage {
  nodeId: string
  role: 'coordinator' | 'worker'
  /** first layer of the range; with layerCount 0 (a coordinator under privacy off) it is 0 */
  firstLayer: number
  /** layers in the range; the range is firstLayer .. firstLayer + layerCount - 1 */
  layerCount: number
  memory: StageMemory
  offeredBytes: number
}

/** A complete placement of a model: the coordinator's stage first, then the workers that got layers. */
export interface StagePlan {
  layerCount: number
  contextSize: number
  parallel: number
  kvCacheType: KvCacheType
  privacy: PrivacyMode
  /** the model's tensors outside the layers (ModelFacts.outsideLayerTensors): llama-server keeps them on the coordinator */
  coordinatorTensors: readonly string[]
  stages: Stage[]
  /** ids of workers that got no layers (too little memory, or too slow to be worth a hop) */
  unusedWorkers: string[]
}

/** A layer range as written in `--stages`, inclusive; null stands for `none`. */
export type StageRange = { first: number, last: number } | null

/**
 * `--placement`: `pipeline` serves the model as one pipeline over every worker, `replicas` as
 * two or more replica groups, `auto` as whichever layout is predicted to decode fastest.
 */
export type Placement = 'auto' | 'pipeline' | 'replicas'

/** Everything a layout depends on: a plan's input plus the placement overrides. */
export interface LayoutInput extends PlanInput {
  /** default `auto` */
  placement?: Placement
  /** `--replicas N`: exactly this many groups */
  replicas?: number
  /** a manual `--stages` override; the layout is then that one pipeline */
  stages?: readonly StageRange[]
}

/** One replica group: a complete pipeline (the coordinator's part, then its worker stages) served by its own llama-server. */
export interface LayoutGroup {
  plan: StagePlan
  /** predicted decode speed of the group alone, in the members' speed unit per layer (1 / the sum of its stage times) */
  speed: number
}

/** The scheduler's output: one or more replica groups that each hold the whole model. */
export interface ServingLayout {
  groups: LayoutGroup[]
  /** workers in no group, or in a group without layers */
  unusedWorkers: string[]
  /** predicted aggregate decode speed: the groups' speeds added up */
  speed: number
}
