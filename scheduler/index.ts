// Public surface of the scheduler: pure planning, GGUF facts + member offers -> stage plan.
export type { KvCacheType, ModelFacts, NodeOffer, PlanInput, PrivacyMode, Stage, StageMemory, StagePlan, StageRange } from './types.js'
export * from './errors.js'
export { planStages } from './plan-stages.js'
export { parseStages, planFromStages } from './stages-override.js'
export { renderLlamaServerArgs } from './llama-server-args.js'
export { renderPlanTable } from './plan-table.js'
export { largestStageTensorBytes } from './stage-tensors.js'
export { formatBytes } from './format-bytes.js'
