/** "3-9", "3" for a single layer, or "none" for an empty range; the `--stages` notation. */
export function formatLayerRange (firstLayer: number, layerCount: number): string {
  if (layerCount === 0) return 'none'
  const last = firstLayer + layerCount - 1
  return last === firstLayer ? String(firstLayer) : `${firstLayer}-${last}`
}
