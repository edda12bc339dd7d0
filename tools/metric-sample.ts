/**
 * The value of one sample in Prometheus text, named exactly as exposed (`name{label="value"}`),
 * or 0 when it is absent: prom-client leaves out a labelled counter never incremented.
 */
export function metricSample (text: string, series: string): number {
  const line = text.split('\n').find(line => line.startsWith(`${series} `))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}
