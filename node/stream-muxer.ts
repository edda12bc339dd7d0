import { yamux } from '@chainsafe/libp2p-yamux'
import type { StreamMuxerFactory } from '@libp2p/interface'

/**
 * The most a stream may hold unread before libp2p aborts it (StreamBufferError); yamux's
 * own default, stated here because the receive window below must not exceed it.
 */
const MAX_STREAM_READ_BUFFER_BYTES = 4 * 1024 * 1024

/**
 * yamux for every llmesh peer. A paused stream (the tunnel pauses one while rpc-server is
 * slow to read) stops granting window, but the sender may still send all the window it was
 * granted. yamux grows that window up to 16 MiB by default while its read buffer allows only
 * 4 MiB, so a model load that outran rpc-server for a moment had its tunnel stream aborted.
 * A window no larger than the read buffer keeps what the sender may send within it; 4 MiB is
 * still far above what a LAN's bandwidth-delay product needs.
 */
export function meshStreamMuxer (): () => StreamMuxerFactory {
  return yamux({
    streamOptions: {
      maxStreamWindowSize: MAX_STREAM_READ_BUFFER_BYTES,
      maxReadBufferLength: MAX_STREAM_READ_BUFFER_BYTES
    }
  })
}
