import { FramingError, UnexpectedEndError } from '../errors.js'
import { FrameReader, writeFrame, type FrameLimits } from '../framing.js'
import { decodeJsonObject, encodeJson, intField, stringField } from '../json-message.js'
import { MessageSchemaError } from '../errors.js'
import { DEFAULT_MESSAGE_CAP_BYTES, MAX_LISTED_CACHED_TENSORS, RPC_CAP_ANSWER_MAX_PAYLOAD_BYTES, RPC_CAP_MAX_PAYLOAD_BYTES, RPC_CAP_PROTOCOL, RpcCapMessageType } from './constants.js'
import { RpcMessageCapRefusedError, RpcTunnelError, RpcTunnelOptionsError, RpcTunnelRefusedError } from './errors.js'
import { isCertificateSha256 } from './channel-identity.js'
import type { DataChannelServer } from './data-channel.js'
import type { RpcTunnelMetrics } from './metrics.js'
import { isTensorKey, type CachedTensor, type TensorCache } from './tensor-cache.js'
import type { Connection, Logger, PeerId, Stream } from '@libp2p/interface'

const workerLimits: FrameLimits = { protocol: RPC_CAP_PROTOCOL, types: new Set([RpcCapMessageType.cap]), maxPayloadBytes: RPC_CAP_MAX_PAYLOAD_BYTES }
const coordinatorLimits: FrameLimits = { protocol: RPC_CAP_PROTOCOL, types: new Set([RpcCapMessageType.accepted, RpcCapMessageType.refused]), maxPayloadBytes: RPC_CAP_ANSWER_MAX_PAYLOAD_BYTES }

/** Worker: the message cap each coordinator set, and the default for one that set none. */
export class MessageCaps {
  readonly #caps = new Map<string, number>()
  readonly #metrics: RpcTunnelMetrics

  constructor (metrics: RpcTunnelMetrics) {
    this.#metrics = metrics
  }

  /** The largest request payload to let through from `coordinator`. */
  get (coordinator: PeerId): number {
    return this.#caps.get(coordinator.toString()) ?? DEFAULT_MESSAGE_CAP_BYTES
  }

  /** Keeps the cap `coordinator` set for its current plan. */
  set (coordinator: PeerId, maxMessageBytes: number): void {
    this.#caps.set(coordinator.toString(), maxMessageBytes)
    this.#metrics.messageCap(maxMessageBytes)
  }
}

/** What the worker side of the cap exchange needs. */
export interface CapExchangeInit {
  /** true when `peer` is the cluster's coordinator; only a coordinator may set a cap */
  authorize: (peer: PeerId) => boolean | Promise<boolean>
  /** the most a coordinator may set: no plan puts a larger message on this worker */
  ceiling: () => number
  caps: MessageCaps
  /** listed in the answer, so that the coordinator sends what it holds as SET_TENSOR_CACHED */
  tensorCache?: TensorCache
  /** the worker's data channel: a coordinator that offers its certificate is admitted there, and told where it is */
  channel?: DataChannelServer
  metrics: RpcTunnelMetrics
  log: Logger
}

/** What the worker answered to a plan's cap: its cached tensors, and its data channel if it has one. */
export interface CapAnswer {
  cachedTensors: CachedTensor[]
  channel?: { port: number, sha256: string }
}

// The worker's refusal, sent back so the coordinator's error says why.
class CapRefusal extends RpcTunnelError {}

/** Worker: answers one cap message on a stream of RPC_CAP_PROTOCOL. */
export async function answerCapMessage (init: CapExchangeInit, stream: Stream, connection: Connection, timeoutMs: number): Promise<void> {
  const peer = connection.remotePeer
  const timer = setTimeout(() => { stream.abort(new Error(`the ${RPC_CAP_PROTOCOL} exchange did not complete within ${timeoutMs} ms`)) }, timeoutMs)
  try {
    // A failing membership lookup must refuse, never admit.
    const admitted = await Promise.resolve().then(async () => await init.authorize(peer)).catch(() => false)
    if (!admitted) throw new RpcTunnelRefusedError(peer.toString())
    const frame = await new FrameReader(stream, workerLimits).next()
    if (frame === undefined) throw new UnexpectedEndError(RPC_CAP_PROTOCOL)
    const message = decodeJsonObject(frame.payload)
    const maxMessageBytes = intField(message, 'maxMessageBytes')
    const offered = channelOffer(message)
    const ceiling = init.ceiling()
    if (maxMessageBytes < 1 || maxMessageBytes > ceiling) {
      throw new CapRefusal(`a cap of ${maxMessageBytes} bytes is outside 1 to ${ceiling}, the most this worker's offered memory allows`, 'cap-refused')
    }
    init.caps.set(peer, maxMessageBytes)
    init.log('coordinator %p set the ggml-rpc message cap to %d bytes', peer, maxMessageBytes)
    const cached = (await init.tensorCache?.inventory() ?? []).slice(0, MAX_LISTED_CACHED_TENSORS)
    const channel = offered === undefined ? undefined : init.channel?.admit(peer, offered)
    await writeFrame(stream, RpcCapMessageType.accepted, encodeJson({
      maxMessageBytes,
      cachedTensors: cached.map(({ key, bytes }) => [key, bytes]),
      ...(channel === undefined ? {} : { channel })
    }))
    await stream.close()
  } catch (err) {
    const failure = err as Error
    if (failure instanceof CapRefusal) {
      await writeFrame(stream, RpcCapMessageType.refused, encodeJson({ reason: failure.message })).catch(() => {})
      await stream.close().catch(() => {})
    } else {
      stream.abort(failure)
    }
    if (failure instanceof RpcTunnelError || failure instanceof FramingError) init.metrics.refused(failure.reason)
    init.log('refused a ggml-rpc message cap from %p: %s', peer, failure.message)
  } finally {
    clearTimeout(timer)
  }
}

/** The certificate fingerprint a coordinator offers for the data channel, if it offers one. */
function channelOffer (message: Record<string, unknown>): string | undefined {
  if (message.channel === undefined) return undefined
  const sha256 = (message.channel as Record<string, unknown> | null)?.sha256
  if (!isCertificateSha256(sha256)) throw new MessageSchemaError('field "channel" must be {"sha256": the certificate\'s SHA-256 in hex}')
  return sha256
}

/**
 * Coordinator: tells `worker` (on `stream`, of RPC_CAP_PROTOCOL) the largest ggml-rpc request
 * its stage of the plan can carry, and offers the fingerprint `channelSha256` of its data
 * channel certificate; resolves, with what the worker's tensor cache holds and where its data
 * channel is, once the worker applies the cap to every new session from this coordinator.
 * Throws RpcMessageCapRefusedError when the worker refuses it.
 */
export async function sendCapMessage (stream: Stream, worker: PeerId, maxMessageBytes: number, channelSha256: string | undefined, signal: AbortSignal): Promise<CapAnswer> {
  if (!Number.isSafeInteger(maxMessageBytes) || maxMessageBytes < 1) {
    throw new RpcTunnelOptionsError(`the ggml-rpc message cap must be a positive whole number of bytes, got ${maxMessageBytes}`)
  }
  const abort = (): void => { stream.abort(new Error(`the ${RPC_CAP_PROTOCOL} exchange with ${worker.toString()} timed out`)) }
  signal.addEventListener('abort', abort, { once: true })
  try {
    await writeFrame(stream, RpcCapMessageType.cap, encodeJson({ maxMessageBytes, ...(channelSha256 === undefined ? {} : { channel: { sha256: channelSha256 } }) }), signal)
    const frame = await new FrameReader(stream, coordinatorLimits).next()
    if (frame === undefined) throw new UnexpectedEndError(RPC_CAP_PROTOCOL)
    const message = decodeJsonObject(frame.payload)
    if (frame.type === RpcCapMessageType.refused) throw new RpcMessageCapRefusedError(worker.toString(), stringField(message, 'reason'))
    const accepted = intField(message, 'maxMessageBytes')
    if (accepted !== maxMessageBytes) throw new RpcMessageCapRefusedError(worker.toString(), `it applied ${accepted} bytes instead`)
    await stream.close().catch(() => {})
    return { cachedTensors: cachedTensorsField(message), channel: channelField(message) }
  } catch (err) {
    stream.abort(err as Error)
    throw err
  } finally {
    signal.removeEventListener('abort', abort)
  }
}

/** Reads the answer's list of cached tensors: [sha256 hex, bytes] pairs; a worker without a cache sends none. */
function cachedTensorsField (message: Record<string, unknown>): CachedTensor[] {
  const list = message.cachedTensors ?? []
  if (!Array.isArray(list) || list.length > MAX_LISTED_CACHED_TENSORS) throw new MessageSchemaError(`field "cachedTensors" must be a list of at most ${MAX_LISTED_CACHED_TENSORS} entries`)
  return list.map((entry: unknown) => {
    if (!Array.isArray(entry) || entry.length !== 2) throw new MessageSchemaError('each entry of "cachedTensors" must be [sha256 hex, bytes]')
    const [key, bytes] = entry as unknown[]
    if (typeof key !== 'string' || !isTensorKey(key) || typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes < 1) {
      throw new MessageSchemaError('each entry of "cachedTensors" must be [sha256 hex, bytes]')
    }
    return { key, bytes }
  })
}

/** Reads where the worker's data channel is; a worker without one (or too old to have one) sends none. */
function channelField (message: Record<string, unknown>): CapAnswer['channel'] {
  if (message.channel === undefined) return undefined
  const channel = message.channel as Record<string, unknown> | null
  const port = channel?.port
  const sha256 = channel?.sha256
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535 || !isCertificateSha256(sha256)) {
    throw new MessageSchemaError('field "channel" must be {"port": 1-65535, "sha256": the certificate\'s SHA-256 in hex}')
  }
  return { port, sha256 }
}
