import { COMMAND_NAMES, commandName, COMMANDS_WITH_RESPONSE, FIXED_REQUEST_BYTES, isKnownCommand, RpcCommand, TunnelCommand } from './ggml-rpc.js'
import { RpcIdleReadTimeoutError, RpcMessageTooLargeError, RpcRequestSizeError, UnexpectedRpcResponseError, UnknownRpcCommandError, type RpcTunnelError } from './errors.js'
import { NativeRelayMode, NativeRelayRefusal, RELAY_RECORD_FIELDS } from './native-socket/addon.js'
import { NativeSocketEnd, type NativeRelayRules, type NativeRelayStop } from './native-socket/native-socket-end.js'
import type { RpcTunnelMetrics } from './metrics.js'
import type { LocalEnd, TunnelEnd } from './tunnel-end.js'

/**
 * What a relay accepts: what RpcRequestValidator accepts of a session past its HELLO and past
 * its weights. So neither a second HELLO nor a SET_TENSOR_CACHED (the coordinator stands it in
 * for weights only while they load); every other command this release defines, at its fixed
 * size where it has one. The tables come from ggml-rpc.ts, the one place that knows them.
 */
const RELAY_TABLES = ((): Pick<NativeRelayRules, 'accepted' | 'fixedBytes' | 'withResponse'> => {
  const accepted = new Uint8Array(256)
  const fixedBytes = new Float64Array(256).fill(-1)
  const withResponse = new Uint8Array(256)
  for (let command = 0; command < 256; command++) {
    accepted[command] = isKnownCommand(command) && command !== RpcCommand.HELLO ? 1 : 0
    fixedBytes[command] = FIXED_REQUEST_BYTES.get(command) ?? -1
    withResponse[command] = COMMANDS_WITH_RESPONSE.has(command) ? 1 : 0
  }
  return { accepted, fixedBytes, withResponse }
})()

function refusedCommandWhy (command: number): string {
  if (command === RpcCommand.HELLO) return 'HELLO may only open a session'
  if (command === TunnelCommand.SET_TENSOR_CACHED) return 'the tensor cache stands in for weights only while they load'
  return `this llama.cpp release defines commands 0 to ${COMMAND_NAMES.length - 1}`
}

/** The error a relay's refusal stands for: the one the validator in JavaScript would have thrown. */
function refusalError ({ refusal, command, size }: NativeRelayStop, rules: NativeRelayRules): RpcTunnelError {
  switch (refusal) {
    case NativeRelayRefusal.COMMAND: return new UnknownRpcCommandError(command, refusedCommandWhy(command))
    case NativeRelayRefusal.SIZE: return new RpcRequestSizeError(commandName(command), size, rules.fixedBytes[command])
    case NativeRelayRefusal.TOO_LARGE: return new RpcMessageTooLargeError(commandName(command), size, rules.maxMessageBytes)
    case NativeRelayRefusal.UNEXPECTED_RESPONSE: return new UnexpectedRpcResponseError()
    default: return new RpcIdleReadTimeoutError(rules.timeoutMs)
  }
}

/** One command of a natively relayed session; times in seconds of one monotonic clock. */
export interface RelayedCommand {
  command: number
  /** the request's payload, and the answer's (0 for a command without one) */
  requestBytes: number
  responseBytes: number
  /** when its header arrived, when its request's last byte did, and when it ended (its answer's end, or its request's) */
  startedS: number
  requestEndedS: number
  endedS: number
}

/** The commands of a batch of relay records, in the order they finished. */
function * relayedCommands (records: Float64Array): Generator<RelayedCommand> {
  for (let i = 0; i < records.length; i += RELAY_RECORD_FIELDS) {
    yield { command: records[i], requestBytes: records[i + 1], responseBytes: records[i + 2], startedS: records[i + 3], requestEndedS: records[i + 4], endedS: records[i + 5] }
  }
}

export interface WorkerRelayOptions {
  /** largest request payload let through, in bytes */
  maxMessageBytes: number
  /** how long the coordinator may stop part-way through a request */
  readTimeoutMs: number
  metrics: RpcTunnelMetrics
  /** called once, with the RpcTunnelError of a refused session: the caller closes both ends with it */
  fail: (err: RpcTunnelError) => void
}

/**
 * Worker: hands a session to the native relay where both its ends run in the addon (the data
 * channel's TLS and the connection to rpc-server), so that decode steps cross the worker without
 * calling JavaScript; returns false, changing nothing, where either end does not. The relay
 * checks requests as RpcRequestValidator does a session past its weights, and times commands as
 * CommandMeter does; call it only at a request's and a response's boundary, with no response
 * awaited, once the weights are loaded (the tensor cache then has nothing more to do).
 */
export function relayWorkerSession (tunnel: TunnelEnd, local: LocalEnd, options: WorkerRelayOptions): boolean {
  if (!(tunnel instanceof NativeSocketEnd) || !(local instanceof NativeSocketEnd)) return false
  const rules: NativeRelayRules = { ...RELAY_TABLES, mode: NativeRelayMode.WORKER, maxMessageBytes: options.maxMessageBytes, timeoutMs: options.readTimeoutMs }
  tunnel.relay(local, rules, {
    refused: stop => { options.fail(refusalError(stop, rules)) },
    records: records => {
      for (const { command, requestBytes, responseBytes, startedS, endedS } of relayedCommands(records)) {
        options.metrics.command(commandName(command), requestBytes, responseBytes, endedS - startedS)
      }
    }
  })
  options.metrics.relayed()
  // A scrape sees the commands up to its moment, as with the bridge's own meter.
  const removeSource = options.metrics.commandSource(() => { tunnel.takeRelayRecords() })
  tunnel.onClose(removeSource)
  return true
}

export interface CoordinatorRelayOptions {
  /** how long the worker may stay silent while llama-server waits for it */
  responseTimeoutMs: number
  /** the worker stalled: the caller closes both ends and reports it */
  stalled: () => void
  /** called once, with the RpcTunnelError of a request llama-server sent that the worker would refuse */
  fail: (err: RpcTunnelError) => void
  /** sees each command once finished */
  relayed?: (command: RelayedCommand) => void
}

/**
 * Coordinator: hands a session to the native relay where both its ends run in the addon
 * (llama-server's connection and the data channel's TLS); returns false, changing nothing, where
 * either does not. The relay follows requests as ResponseWatchdog does, with its timeout; call
 * it at a request's and a response's boundary, with no response awaited, once the weights are
 * loaded (the tensor dedup then has nothing more to do).
 */
export function relayCoordinatorSession (tunnel: TunnelEnd, local: LocalEnd, options: CoordinatorRelayOptions): boolean {
  if (!(tunnel instanceof NativeSocketEnd) || !(local instanceof NativeSocketEnd)) return false
  // llama-server is local and trusted: requests are only framed, capped at nothing.
  const rules: NativeRelayRules = { ...RELAY_TABLES, mode: NativeRelayMode.COORDINATOR, maxMessageBytes: Number.MAX_SAFE_INTEGER, timeoutMs: options.responseTimeoutMs }
  tunnel.relay(local, rules, {
    refused: stop => {
      if (stop.refusal === NativeRelayRefusal.STALLED) options.stalled()
      else options.fail(refusalError(stop, rules))
    },
    records: records => {
      if (options.relayed === undefined) return
      for (const command of relayedCommands(records)) options.relayed(command)
    }
  })
  return true
}
