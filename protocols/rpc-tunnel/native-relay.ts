import { COMMAND_NAMES, commandName, COMMANDS_WITH_RESPONSE, FIXED_REQUEST_BYTES, isKnownCommand, RpcCommand, TunnelCommand } from './ggml-rpc.js'
import { RpcIdleReadTimeoutError, RpcMessageTooLargeError, RpcRequestSizeError, UnexpectedRpcResponseError, UnknownRpcCommandError, type RpcTunnelError } from './errors.js'
import { NativeRelayRefusal, RELAY_RECORD_FIELDS } from './native-socket/addon.js'
import { NativeSocketEnd, type NativeRelayRules, type NativeRelayStop } from './native-socket/native-socket-end.js'
import type { RpcTunnelMetrics } from './metrics.js'
import type { LocalEnd, TunnelEnd } from './tunnel-end.js'

/**
 * What the relay accepts: what RpcRequestValidator accepts of a session past its HELLO and past
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

/** The error a relay's refusal stands for: the one the worker bridge's validator would have thrown. */
function refusalError ({ refusal, command, size }: NativeRelayStop, rules: NativeRelayRules): RpcTunnelError {
  switch (refusal) {
    case NativeRelayRefusal.COMMAND: return new UnknownRpcCommandError(command, refusedCommandWhy(command))
    case NativeRelayRefusal.SIZE: return new RpcRequestSizeError(commandName(command), size, rules.fixedBytes[command])
    case NativeRelayRefusal.TOO_LARGE: return new RpcMessageTooLargeError(commandName(command), size, rules.maxMessageBytes)
    case NativeRelayRefusal.UNEXPECTED_RESPONSE: return new UnexpectedRpcResponseError()
    default: return new RpcIdleReadTimeoutError(rules.readTimeoutMs)
  }
}

export interface NativeRelayOptions {
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
export function startNativeRelay (tunnel: TunnelEnd, local: LocalEnd, options: NativeRelayOptions): boolean {
  if (!(tunnel instanceof NativeSocketEnd) || !(local instanceof NativeSocketEnd)) return false
  const rules: NativeRelayRules = { ...RELAY_TABLES, maxMessageBytes: options.maxMessageBytes, readTimeoutMs: options.readTimeoutMs }
  tunnel.relay(local, rules, {
    refused: stop => { options.fail(refusalError(stop, rules)) },
    records: records => {
      for (let i = 0; i < records.length; i += RELAY_RECORD_FIELDS) {
        options.metrics.command(commandName(records[i]), records[i + 1], records[i + 2], records[i + 3])
      }
    }
  })
  // A scrape sees the commands up to its moment, as with the bridge's own meter.
  const removeSource = options.metrics.commandSource(() => { tunnel.takeRelayRecords() })
  tunnel.onClose(removeSource)
  return true
}
