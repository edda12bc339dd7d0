/** The options asked for a synthetic model that cannot exist or that llama.cpp cannot load. */
export class InvalidModelOptionsError extends Error {
  override name = 'InvalidModelOptionsError'
}
