/**
 * The API's Prometheus metrics, registered in the node's own registry so that one GET /metrics
 * (and `mesh` over the control socket) shows the node and the API together. Labels are route
 * templates, methods and statuses: never raw URLs, never request content.
 *
 * Engine restarts are counted by the node (NodeMetrics.engineRestarted, llmesh_engine_restarts_total):
 * the supervisors that restart llama-server or rpc-server call it.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { GenerationObserver } from '../engine/observed-engine.js'
import { RATE_WINDOW_S, TokenRate } from '../engine/token-rate.js'
import type { AdmissionGauge } from './admission.js'
import { LatencyWindow, type LatencyPercentiles } from './latency-window.js'

/** The serving load as `mesh status` shows it. */
export interface ServingLoad {
  /** tokens generated per second over the last RATE_WINDOW_S seconds, all requests together */
  tokensPerSecond: number
  /** requests waiting for a slot */
  queueDepth: number
  /** requests generating now */
  activeStreams: number
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
const TOKEN_GAP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 5]

/** The API's metrics; it observes the engine's tokens (see ObservedEngine) and the finished requests. */
export class ApiMetrics implements GenerationObserver {
  readonly #requests: Counter
  readonly #requestSeconds: Histogram
  readonly #ttft: Histogram
  readonly #itl: Histogram
  readonly #promptTokens: Counter
  readonly #completionTokens: Counter
  readonly #rate = new TokenRate()
  readonly #recentTtft = new LatencyWindow()
  #admission: AdmissionGauge | undefined

  constructor (registry: Registry) {
    const registers = [registry]
    this.#requests = new Counter({ name: 'llmesh_http_requests_total', help: 'HTTP requests answered, by route template, method and status', labelNames: ['route', 'method', 'status'], registers })
    this.#requestSeconds = new Histogram({ name: 'llmesh_http_request_duration_seconds', help: 'Time from a request\'s arrival to the end of its response, by route template', labelNames: ['route'], buckets: LATENCY_BUCKETS, registers })
    this.#ttft = new Histogram({ name: 'llmesh_time_to_first_token_seconds', help: 'Time from the start of a generation (once admitted to an engine slot) to its first token, prompt processing included', buckets: LATENCY_BUCKETS, registers })
    this.#itl = new Histogram({ name: 'llmesh_inter_token_latency_seconds', help: 'Time between consecutive tokens of one generation', buckets: TOKEN_GAP_BUCKETS, registers })
    this.#promptTokens = new Counter({ name: 'llmesh_prompt_tokens_total', help: 'Prompt tokens of finished requests', registers })
    this.#completionTokens = new Counter({ name: 'llmesh_completion_tokens_total', help: 'Completion tokens of finished requests', registers })
    const load = (): ServingLoad => this.load()
    new Gauge({ name: 'llmesh_decode_tokens_per_second', help: `Tokens generated per second over the last ${RATE_WINDOW_S} s, all requests together`, registers, collect () { this.set(load().tokensPerSecond) } })
    new Gauge({ name: 'llmesh_queue_depth', help: 'Requests waiting for an engine slot', registers, collect () { this.set(load().queueDepth) } })
    new Gauge({ name: 'llmesh_active_streams', help: 'Requests generating now', registers, collect () { this.set(load().activeStreams) } })
    const slots = (): number => this.#admission?.slots ?? 0
    new Gauge({ name: 'llmesh_engine_slots', help: 'Requests the engine serving now generates at once: its parallel slots', registers, collect () { this.set(slots()) } })
  }

  /** Reads queue depth, active requests and slots from the API's admission queue from now on. */
  watchAdmission (admission: AdmissionGauge): void {
    this.#admission = admission
  }

  firstToken (seconds: number): void {
    this.#ttft.observe(seconds)
    this.#recentTtft.add(seconds)
    this.#rate.add()
  }

  nextToken (seconds: number): void {
    this.#itl.observe(seconds)
    this.#rate.add()
  }

  /** Counts one answered request. */
  request (route: string, method: string, status: number, seconds: number): void {
    this.#requests.inc({ route, method, status: String(status) })
    this.#requestSeconds.observe({ route }, seconds)
  }

  /** Counts the tokens of one finished request. */
  tokens (promptTokens: number, completionTokens: number): void {
    this.#promptTokens.inc(promptTokens)
    this.#completionTokens.inc(completionTokens)
  }

  /** Tokens per second, queue depth and active requests now. */
  load (): ServingLoad {
    return {
      tokensPerSecond: Math.round(this.#rate.perSecond() * 10) / 10,
      queueDepth: this.#admission?.depth ?? 0,
      activeStreams: this.#admission?.active ?? 0
    }
  }

  /** Time to first token of the last minute's generations, p50 and p99 (the dashboard's chart). */
  recentTimeToFirstToken (): LatencyPercentiles {
    return this.#recentTtft.percentiles()
  }
}

/** The route template a request matched (never its raw URL, which could carry anything). */
export function routeLabel (request: FastifyRequest): string {
  return request.routeOptions.url ?? 'unmatched'
}

/** How createApiServer exposes metrics. */
export interface ApiMetricsOptions {
  metrics: ApiMetrics
  /** the node's registry, served as GET /metrics */
  registry: Registry
  /** serve GET /metrics without an API key (`--metrics-public`) */
  public: boolean
}

async function requestMetricsPlugin (app: FastifyInstance, options: ApiMetricsOptions): Promise<void> {
  // The admission queue is registered by the API's own plugins; read it once they all are.
  app.addHook('onReady', async () => {
    if (app.hasDecorator('admission')) options.metrics.watchAdmission(app.admission)
  })
  app.onRequestEnd((request, { status, durationMs }) => {
    options.metrics.request(routeLabel(request), request.method, status, durationMs / 1000)
    if (request.usage !== null) options.metrics.tokens(request.usage.prompt_tokens, request.usage.completion_tokens)
  })
}

/** Fastify plugin: counts every answered request and the tokens of every finished generation. */
export const requestMetrics = fp(requestMetricsPlugin, { name: 'llmesh-request-metrics', fastify: '5.x', dependencies: ['llmesh-request-facts'] })
