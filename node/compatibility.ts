import { REQUIRED_FEATURES } from './certificate.js'
import { IncompatibleNodeError } from './errors.js'

/** The build facts two nodes must agree on. */
export interface BuildFacts {
  llamaCppTag: string
  features: number
}

/**
 * Throws IncompatibleNodeError naming both nodes and versions when `remote` cannot work with `local`:
 * ggml-rpc refuses mismatched builds anyway, so the refusal is said early and clearly.
 */
export function checkCompatible (local: BuildFacts, remote: BuildFacts, remoteName: string, localName = 'this node'): void {
  if (local.llamaCppTag !== remote.llamaCppTag) {
    throw new IncompatibleNodeError(`${remoteName} runs llama.cpp ${remote.llamaCppTag} but ${localName} runs llama.cpp ${local.llamaCppTag}; install the same llmesh version on every node`)
  }
  const missing = REQUIRED_FEATURES & ~remote.features
  if (missing !== 0) {
    throw new IncompatibleNodeError(`${remoteName} lacks required feature bits 0x${missing.toString(16)} (it offers 0x${remote.features.toString(16)}, ${localName} needs 0x${REQUIRED_FEATURES.toString(16)}); upgrade llmesh on it`)
  }
}
