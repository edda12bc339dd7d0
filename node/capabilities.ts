import { availableParallelism, freemem } from 'node:os'

/** What a member offers to the cluster. */
export interface Capabilities {
  /** memory the node offers for model layers, bytes */
  memoryBytes: number
  cpuCores: number
  /** GPU name, or null for CPU-only nodes */
  gpu: string | null
  llamaCppTag: string
  /** ggml build flags the node's llama.cpp was built with */
  buildFlags: string[]
  /** measured single-thread float throughput, GFLOP/s */
  computeGflops: number
}

/** Measures single-thread float multiply-add throughput for about `budgetMs`. */
export function measureComputeGflops (budgetMs = 50): number {
  const n = 64
  const a = new Float32Array(n * n).fill(1.0001)
  const b = new Float32Array(n * n).fill(0.9999)
  const c = new Float32Array(n * n)
  const round = (): void => {
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < n; k++) {
        const aik = a[i * n + k]
        for (let j = 0; j < n; j++) c[i * n + j] += aik * b[k * n + j]
      }
    }
  }
  // An untimed first round gets the loop compiled: interpreted, on a busy machine, one round
  // could outlast the budget and measure 0, a speed the scheduler rightly refuses.
  round()
  let rounds = 0
  const start = performance.now()
  while (performance.now() - start < budgetMs) {
    round()
    rounds++
  }
  const seconds = (performance.now() - start) / 1000
  return Math.max(0.01, Math.round((2 * n * n * n * rounds) / seconds / 1e7) / 100)
}

/** The capabilities of this machine; `memoryBytes` defaults to the free memory now. */
export function localCapabilities (llamaCppTag: string, memoryBytes = freemem()): Capabilities {
  return {
    memoryBytes,
    cpuCores: availableParallelism(),
    gpu: null,
    llamaCppTag,
    buildFlags: ['GGML_RPC=ON', 'LLAMA_CURL=OFF'],
    computeGflops: measureComputeGflops()
  }
}

/** Checks the shape of an untrusted capability record. */
export function isCapabilities (value: unknown): value is Capabilities {
  const v = value as Record<string, unknown>
  return typeof v === 'object' && v !== null && Number.isSafeInteger(v.memoryBytes) && Number.isSafeInteger(v.cpuCores) &&
    (v.gpu === null || typeof v.gpu === 'string') && typeof v.llamaCppTag === 'string' &&
    Array.isArray(v.buildFlags) && v.buildFlags.every(f => typeof f === 'string') && typeof v.computeGflops === 'number'
}
