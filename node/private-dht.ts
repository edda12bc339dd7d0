import { kadDHT, type KadDHT, type KadDHTComponents, type PeerInfoMapper, type SelectFn, type ValidateFn } from '@libp2p/kad-dht'

/** Protocol id of the cluster's private DHT: its own prefix keeps it apart from the IPFS DHT. */
const DHT_PROTOCOL = '/llmesh/kad/1.0.0'

/**
 * How long one DHT request to one peer (dial included) may take, in ms. kad-dht adapts it to
 * the answers it sees, between 5 s and 60 s by default: sized for the public internet. On a
 * LAN members answer in milliseconds. A lookup yields its value only once every peer it asked
 * has answered or timed out, so one member that went away silently (a stopped peer over QUIC
 * is not refused, only timed out) held every lookup for 5 s: as long as a capability
 * lookup's whole budget, which then found nothing, not even the copy held locally.
 */
const REQUEST_TIMEOUT = { minTimeout: 1000, maxTimeout: 2000 }

export interface PrivateDhtInit {
  /** record validators by key namespace: only valid records are stored or accepted */
  validators: Record<string, ValidateFn>
  /** which of several records under a key wins, by key namespace */
  selectors: Record<string, SelectFn>
  /** true for peers this node holds a valid member certificate of */
  isMember: (peerId: string) => boolean
}

/**
 * Keeps every address of a member (private ones included: the DHT runs on a LAN) and none of
 * anyone else. kad-dht adds a peer to its routing table, and names it to others as a closer
 * peer, only with an address left: a stranger who advertised the DHT protocol, or whom a
 * reply named, never enters the table, is never tagged keep-alive (which makes libp2p re-dial
 * it) and is never queried.
 */
function membersOnlyMapper (isMember: (peerId: string) => boolean): PeerInfoMapper {
  return (peer) => isMember(peer.id.toString()) ? peer : { ...peer, multiaddrs: [] }
}

/** The cluster's private DHT: own protocol, server mode, members only (with private addresses), LAN timeouts. */
export function privateDht (init: PrivateDhtInit): (components: KadDHTComponents) => KadDHT {
  return kadDHT({
    protocol: DHT_PROTOCOL,
    clientMode: false,
    peerInfoMapper: membersOnlyMapper(init.isMember),
    validators: init.validators,
    selectors: init.selectors,
    allowQueryWithZeroPeers: true,
    networkDialTimeout: REQUEST_TIMEOUT
  })
}
