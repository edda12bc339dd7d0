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
  /**
   * measured float throughput of the threads the node computes with (its llama-servers' on the
   * coordinator, its rpc-server's on a worker): one thread's, times their count, GFLOP/s
   */
  computeGflops: number
}

/**
 * Measures single-thread float multiply-add throughput for about `budgetMs`, from the fastest of
 * its many short rounds (about half a millisecond each): the machine's own speed, not the share
 * of a core it got while other processes ran. Nodes started together on one machine (`mesh up`),
 * or a node started beside a busy program, measured a fraction of their speed over the whole
 * budget, and the scheduler then left a worker it took for slow without layers.
 */
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
  let fastestMs = Infinity
  const start = performance.now()
  for (let roundStart = start; roundStart - start < budgetMs;) {
    round()
    const now = performance.now()
    fastestMs = Math.min(fastestMs, now - roundStart)
    roundStart = now
  }
  return Math.max(0.01, Math.round((2 * n * n * n) / (fastestMs / 1000) / 1e7) / 100)
}

export interface LocalCapabilitiesOptions {
  /** threads of the node's compute process: the scheduler weighs the node by their speed */
  computeThreads: number
  /** memory offered (default: the free memory now) */
  memoryBytes?: number
  /** one thread's throughput (default: measured now) */
  threadGflops?: number
}

/** The capabilities of this machine. */
export function localCapabilities (llamaCppTag: string, options: LocalCapabilitiesOptions): Capabilities {
  const threadGflops = options.threadGflops ?? measureComputeGflops()
  return {
    memoryBytes: options.memoryBytes ?? freemem(),
    cpuCores: availableParallelism(),
    gpu: null,
    llamaCppTag,
    buildFlags: ['GGML_RPC=ON', 'LLAMA_CURL=OFF'],
    // ggml splits each operation over its threads: close to linear on the cores a node gives it.
    computeGflops: Math.round(threadGflops * options.computeThreads * 100) / 100
  }
}

/** Checks the shape of an untrusted capability record. */
export function isCapabilities (value: unknown): value is Capabilities {
  const v = value as Record<string, unknown>
  return typeof v === 'object' && v !== null && Number.isSafeInteger(v.memoryBytes) && Number.isSafeInteger(v.cpuCores) &&
    (v.gpu === null || typeof v.gpu === 'string') && typeof v.llamaCppTag === 'string' &&
    Array.isArray(v.buildFlags) && v.buildFlags.every(f => typeof f === 'string') && typeof v.computeGflops === 'number'
}
