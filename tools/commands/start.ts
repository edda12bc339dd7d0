import { Command, InvalidArgumentError, Option } from 'commander'
import { lockChildMemory } from '../../engine/process-hardening.js'
import { dataDir } from '../../node/data-dir.js'
import { createLog } from '../../node/log.js'
import { MeshNode } from '../../node/mesh-node.js'
import { isPeerAddress } from '../../node/static-peers.js'
import { parseNonNegativeInt, parsePort, parsePositiveInt } from '../cli-parsers.js'
import { parseDuration } from '../parse-duration.js'
import { DEFAULT_MAX_QUEUE } from '../../api/constants.js'
import { DEFAULT_RATE_LIMITS } from '../../api/rate-limits.js'
import { Coordinator, DEFAULT_DRAIN_TIMEOUT_MS } from '../../node/serving/coordinator.js'
import { ENGINE_CHOICES, type EngineChoice } from '../../node/serving/serving-plan.js'
import { parseStages, type PrivacyMode, type StageRange } from '../../scheduler/index.js'
import { checkPlacementOptions, placementOption, replicasOption, type PlacementOptions } from '../placement-options.js'
import type { Role } from '../../node/certificate.js'
import type { Encryption } from '../../node/libp2p-node.js'
import { apiTls } from '../api-tls.js'

interface StartOptions extends PlacementOptions {
  role: Role
  listen?: string[]
  tunnelPort: number
  peer: string[]
  apiPort: number
  encryption: Encryption
  mdns: boolean
  memory?: number
  model?: string
  engine: EngineChoice
  apiHost: string
  privacy: PrivacyMode
  stages?: StageRange[]
  threads?: number
  ctx?: number
  parallel: number
  mlock?: boolean
  metricsPublic?: boolean
  drainTimeout: number
  maxQueue: number
  rateLimitKey: number
  rateLimitIp: number
  corsOrigin: string[]
  tls?: 'auto'
  tlsCert?: string
  tlsKey?: string
}

function parseStagesOption (value: string): StageRange[] {
  try {
    return parseStages(value)
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message)
  }
}

function collectPeer (value: string, previous: string[]): string[] {
  if (!isPeerAddress(value)) throw new InvalidArgumentError(`expected a multiaddr or host:port, got "${value}".`)
  return [...previous, value]
}

function collectOrigin (value: string, previous: string[]): string[] {
  let origin: string
  try {
    origin = new URL(value).origin
  } catch {
    throw new InvalidArgumentError(`expected an origin such as https://chat.example.lan, got "${value}".`)
  }
  if (origin === 'null' || origin !== value.replace(/\/$/, '')) throw new InvalidArgumentError(`expected an origin (scheme, host and port only) such as https://chat.example.lan, got "${value}".`)
  return [...previous, origin]
}

/** `mesh start`: runs the mesh node in the foreground until SIGINT/SIGTERM. */
export function startCommand (): Command {
  return new Command('start')
    .description('run this machine\'s mesh node in the foreground (logs on stdout; Ctrl-C stops it cleanly)')
    .addOption(new Option('--role <role>', 'coordinator or worker; must match the certificate').choices(['coordinator', 'worker']).makeOptionMandatory())
    .option('--listen <multiaddr...>', 'listen address; repeat for more; QUIC with /udp/PORT/quic-v1 (default /ip4/0.0.0.0/tcp/9090)')
    .addOption(new Option('--tunnel-port <n>', 'worker: TCP port of the tunnel\'s data channel (TLS, only for the coordinator\'s key), on the --listen hosts; set one to open it in a firewall').argParser(parsePort).default(0, 'a free port'))
    .option('--peer <addr>', 'static peer: multiaddr or host:port (DNS names are resolved); repeat for more', collectPeer, [])
    .addOption(new Option('--api-port <n>', 'port of the OpenAI-compatible API on the coordinator').argParser(parsePositiveInt).default(8080))
    .addOption(new Option('--encryption <kind>', 'transport encryption to prefer').choices(['noise', 'tls']).default('noise'))
    .option('--no-mdns', 'do not discover peers on the LAN with mDNS')
    .addOption(new Option('--memory <bytes>', 'memory offered to the cluster (default: free memory at start)').argParser(parsePositiveInt))
    .option('--model <path>', 'coordinator: the GGUF model to serve through the API')
    .addOption(new Option('--engine <engine>', 'coordinator: local runs the model in this process, cluster splits it over the workers with llama-server, auto picks cluster when workers are alive').choices(ENGINE_CHOICES).default('auto'))
    .option('--api-host <host>', 'coordinator: address the API listens on; 0.0.0.0 for every address (then use TLS)', '127.0.0.1')
    .addOption(new Option('--tls <mode>', 'coordinator: auto serves the API over HTTPS with a certificate from the cluster\'s CA ("mesh ca-cert" prints it for clients)').choices(['auto']).conflicts(['tlsCert', 'tlsKey']))
    .option('--tls-cert <file>', 'coordinator: serve the API over HTTPS with this PEM certificate chain (with --tls-key)')
    .option('--tls-key <file>', 'coordinator: the PEM private key of --tls-cert')
    .addOption(new Option('--privacy <mode>', 'coordinator: on keeps the first layer and the output head here, so workers never see text or token ids').choices(['on', 'off']).default('on'))
    .addOption(new Option('--stages <ranges>', 'coordinator: manual layer ranges, coordinator first, e.g. 0-9,10-27').argParser(parseStagesOption))
    .addOption(placementOption('coordinator: '))
    .addOption(replicasOption('coordinator: '))
    .addOption(new Option('--threads <n>', 'coordinator: compute threads of each llama-server (default: the CPU budget\'s)').argParser(parsePositiveInt))
    .option('--metrics-public', 'coordinator: serve GET /metrics without an API key (for a Prometheus on a trusted network)')
    .addOption(new Option('--drain-timeout <duration>', 'coordinator: on SIGTERM or Ctrl-C, how long requests in flight may take to finish while new ones get 503, e.g. 30s').argParser(parseDuration).default(DEFAULT_DRAIN_TIMEOUT_MS, '30s'))
    .addOption(new Option('--max-queue <n>', 'coordinator: requests that may wait for a busy engine; more get 429 with Retry-After').argParser(parseNonNegativeInt).default(DEFAULT_MAX_QUEUE))
    .addOption(new Option('--rate-limit-key <n>', 'coordinator: requests per minute one API key may send (0: no limit)').argParser(parseNonNegativeInt).default(DEFAULT_RATE_LIMITS.perKey))
    .addOption(new Option('--rate-limit-ip <n>', 'coordinator: requests per minute one client address may send (0: no limit)').argParser(parseNonNegativeInt).default(DEFAULT_RATE_LIMITS.perIp))
    .addOption(new Option('--cors-origin <origin>', 'coordinator: a web page origin allowed to call the API, e.g. https://chat.example.lan; repeat for more').argParser(collectOrigin).default([], 'none, browsers are refused'))
    .addOption(new Option('--ctx <n>', 'coordinator: context size in tokens (default: the model\'s, at most 4096)').argParser(parsePositiveInt))
    .addOption(new Option('--parallel <n>', 'coordinator: requests the engine generates at once; they share the context evenly').argParser(parsePositiveInt).default(1))
    .option('--mlock', 'lock llama-server\'s and rpc-server\'s memory (weights, KV cache) in RAM so that none of it reaches swap, where the machine allows it (mesh status says whether it did)')
    .action(async (options: StartOptions) => {
      if (options.mlock === true) lockChildMemory()
      if (options.model != null && options.role !== 'coordinator') {
        throw new InvalidArgumentError('--model is for the coordinator; workers lend memory to the coordinator\'s model')
      }
      if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) throw new InvalidArgumentError('--tls-cert and --tls-key go together')
      if (options.role !== 'coordinator' && (options.tls !== undefined || options.tlsCert !== undefined)) {
        throw new InvalidArgumentError('--tls, --tls-cert and --tls-key are for the coordinator, which serves the API')
      }
      checkPlacementOptions(options)
      const log = createLog()
      const dir = dataDir()
      const tls = options.role === 'coordinator' ? await apiTls(options, dir, log) : undefined
      const node = await MeshNode.start({
        dir,
        role: options.role,
        listen: options.listen ?? ['/ip4/0.0.0.0/tcp/9090'],
        tunnelPort: options.tunnelPort,
        peers: options.peer,
        encryption: options.encryption,
        mdns: options.mdns,
        memoryBytes: options.memory,
        // The coordinator computes in its llama-servers, with --threads each.
        computeThreads: options.role === 'coordinator' ? options.threads : undefined,
        apiPort: options.apiPort,
        log
      })
      let coordinator: Coordinator | undefined
      if (options.model != null) {
        try {
          coordinator = await Coordinator.start({
            node,
            dir,
            modelPath: options.model,
            engine: options.engine,
            privacy: options.privacy,
            stages: options.stages,
            placement: options.placement,
            replicas: options.replicas,
            threads: options.threads,
            contextSize: options.ctx,
            parallel: options.parallel,
            apiHost: options.apiHost,
            apiPort: options.apiPort,
            apiTls: tls,
            metricsPublic: options.metricsPublic,
            apiLimits: {
              maxQueue: options.maxQueue,
              rateLimits: { perKey: options.rateLimitKey, perIp: options.rateLimitIp, windowMs: 60_000 },
              corsOrigins: options.corsOrigin
            },
            drainTimeoutMs: options.drainTimeout,
            log
          })
        } catch (err) {
          await node.stop()
          throw err
        }
      } else if (options.role === 'coordinator') {
        log('warn', 'no --model given: the node runs, but the API serves nothing until it is restarted with --model')
      }
      await new Promise<void>(resolve => {
        const stop = (signal: string): void => {
          log('info', `${signal} received, stopping`)
          resolve()
        }
        process.once('SIGINT', stop)
        process.once('SIGTERM', stop)
      })
      await coordinator?.stop()
      await node.stop()
      log('info', 'stopped')
    })
}
