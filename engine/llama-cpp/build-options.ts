import { existsSync, readdirSync } from 'node:fs'
import { BuildPrerequisiteError } from './errors.js'
import { findExecutable } from './find-executable.js'

/** GPU backend compiled into the llama.cpp tools. */
export type GpuBackend = 'none' | 'cuda' | 'vulkan'

/** What the user asked for with `--gpu`; `auto` picks CUDA when nvcc and an NVIDIA GPU are present. */
export type GpuChoice = 'auto' | GpuBackend

export const GPU_CHOICES: readonly GpuChoice[] = ['auto', 'none', 'cuda', 'vulkan']

/** Where CUDA toolkits install nvcc when it is not on PATH. */
const CUDA_BIN_DIRS = ['/usr/local/cuda/bin', '/opt/cuda/bin']

/** Flags every build gets: the RPC backend, no libcurl, static binaries that can be copied into the cache. */
const BASE_FLAGS = [
  '-DCMAKE_BUILD_TYPE=Release',
  '-DGGML_RPC=ON',
  '-DLLAMA_CURL=OFF',
  '-DBUILD_SHARED_LIBS=OFF',
  '-DLLAMA_BUILD_TESTS=OFF',
  '-DLLAMA_BUILD_EXAMPLES=OFF'
]

const BACKEND_FLAGS: Record<GpuBackend, string[]> = {
  none: [],
  cuda: ['-DGGML_CUDA=ON'],
  vulkan: ['-DGGML_VULKAN=ON']
}

/** The cmake flags for a build with the given GPU backend; they are part of the cache key. */
export function cmakeFlags (backend: GpuBackend): string[] {
  return [...BASE_FLAGS, ...BACKEND_FLAGS[backend]]
}

/** True when the kernel driver reports at least one NVIDIA GPU. */
function hasNvidiaGpu (): boolean {
  const gpusDir = '/proc/driver/nvidia/gpus'
  try {
    return readdirSync(gpusDir).length > 0
  } catch {
    return existsSync('/dev/nvidia0')
  }
}

/** Path of nvcc, or undefined when no CUDA toolkit is installed. */
export function findNvcc (): string | undefined {
  return findExecutable('nvcc', CUDA_BIN_DIRS)
}

/** The backend `--gpu auto` picks on this machine: CUDA when nvcc and an NVIDIA GPU are present. */
export function autoGpuBackend (): GpuBackend {
  return findNvcc() != null && hasNvidiaGpu() ? 'cuda' : 'none'
}

/** Turns `--gpu auto|none|cuda|vulkan` into the backend to build, checking that its toolkit exists. */
export function resolveGpuBackend (choice: GpuChoice): GpuBackend {
  switch (choice) {
    case 'auto':
      return autoGpuBackend()
    case 'none':
      return 'none'
    case 'cuda':
      if (findNvcc() == null) {
        throw new BuildPrerequisiteError('--gpu cuda needs the CUDA toolkit, but nvcc was not found on PATH or in /usr/local/cuda/bin: install the CUDA toolkit or use --gpu none')
      }
      return 'cuda'
    case 'vulkan':
      if (findExecutable('glslc') == null) {
        throw new BuildPrerequisiteError('--gpu vulkan needs the Vulkan SDK, but the shader compiler glslc was not found: install the Vulkan SDK (Debian: apt-get install libvulkan-dev glslc) or use --gpu none')
      }
      return 'vulkan'
  }
}
