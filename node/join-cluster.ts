import './polyfill.js'
import { quic } from '@chainsafe/libp2p-quic'
import { identify } from '@libp2p/identify'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { tls } from '@libp2p/tls'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { publicKeyFromProtobuf } from '@libp2p/crypto/keys'
import { bundledLlamaCppSource } from '../engine/llama-cpp/source.js'
import { requestAdmission } from '../protocols/auth/auth-handshake.js'
import { verifyCertificate, type Certificate, type TrustAnchor } from './certificate.js'
import { checkCompatible } from './compatibility.js'
import { meshNoise } from './connection-encrypter.js'
import { isAnswering } from './control-socket.js'
import { ensureDataDir, exists, loadOrCreateNodeKey, openDatastore, readClusterConfig, writeClusterConfig, type DataDir } from './data-dir.js'
import { AuthRefusedError, ClusterExistsError, DataDirError, InviteError } from './errors.js'
import { LOCAL_FEATURES } from './features.js'
import { decodeInvite, type Invite } from './invite.js'
import { MembershipStore } from './membership-store.js'
import { NodeMetrics } from './metrics.js'
import { verifyRevocationList } from './revocation-list.js'
import { meshStreamMuxer } from './stream-muxer.js'
import type { PrivateKey } from '@libp2p/interface'

/** What `mesh join` obtained. */
export interface JoinedCluster {
  clusterId: string
  peerId: string
  certificate: Certificate
  coordinatorPeerId: string
}

const JOIN_DIAL_TIMEOUT_MS = 10_000

/**
 * Redeems an invite with the coordinator over /llmesh/auth/1.0.0 and stores the
 * certificate it issues, the coordinator's addresses and the CA public key in `dir`.
 */
export async function joinCluster (dir: DataDir, inviteText: string, force: boolean): Promise<JoinedCluster> {
  const invite = decodeInvite(inviteText)
  if (Date.now() > invite.expiresAt) throw new InviteError(`the invite expired at ${new Date(invite.expiresAt).toISOString()}; ask for a new one with "mesh token" on the coordinator`, 'expired')
  if (await isAnswering(dir.controlSocket)) throw new DataDirError(`a node is running on ${dir.root}; stop it before joining a cluster`)
  if (await exists(dir.config) && !force) {
    const existing = await readClusterConfig(dir).then(c => `cluster ${c.clusterId}`, () => 'a cluster')
    throw new ClusterExistsError(`${dir.root} already belongs to ${existing}; pass --force to leave it and join this one`)
  }
  await ensureDataDir(dir)
  const privateKey = await loadOrCreateNodeKey(dir)
  const peerId = peerIdFromPrivateKey(privateKey).toString()
  const trust = inviteTrust(invite)
  const { certificate, coordinator, revocations } = await redeem(invite, privateKey, trust)
  await verifyCertificate(certificate, peerId, trust)
  const datastore = await openDatastore(dir)
  try {
    const store = new MembershipStore(datastore)
    await store.setSelfCertificate(certificate)
    await store.putMember(coordinator)
    if (revocations != null) await store.setRevocations(await verifyRevocationList(revocations, invite.clusterId, trust.caKey))
  } finally {
    await datastore.close()
  }
  await writeClusterConfig(dir, { clusterId: invite.clusterId, caPublicKey: invite.caPublicKey, coordinatorAddrs: invite.addrs })
  return { clusterId: invite.clusterId, peerId, certificate, coordinatorPeerId: coordinator.body.peerId }
}

// A joiner trusts the CA named by the invite; it learns revocations from the coordinator.
function inviteTrust (invite: Invite): TrustAnchor {
  return { caKey: publicKeyFromProtobuf(Buffer.from(invite.caPublicKey, 'base64')), clusterId: invite.clusterId, isRevoked: () => false }
}

async function redeem (invite: Invite, privateKey: PrivateKey, trust: TrustAnchor): Promise<{ certificate: Certificate, coordinator: Certificate, revocations: unknown }> {
  const addrs = invite.addrs.map(a => multiaddr(a))
  const node = await createLibp2p({
    privateKey,
    transports: invite.addrs.some(a => a.includes('/quic')) ? [tcp(), quic()] : [tcp()],
    connectionEncrypters: [meshNoise(), tls()],
    streamMuxers: [meshStreamMuxer()],
    services: { identify: identify() }
  })
  try {
    const connection = await node.dial(addrs, { signal: AbortSignal.timeout(JOIN_DIAL_TIMEOUT_MS) }).catch((err: Error) => {
      throw new InviteError(`cannot reach the coordinator at ${invite.addrs.join(', ')} (${err.message}); check that it runs and that this machine can reach it`, 'unreachable')
    })
    const welcome = await requestAdmission(connection, {
      clusterId: invite.clusterId,
      llamaCppTag: bundledLlamaCppSource().tag,
      features: LOCAL_FEATURES,
      invite: { id: invite.id, secret: invite.secret }
    }, new NodeMetrics()).catch((err: Error) => {
      if (err instanceof AuthRefusedError) throw err
      // The coordinator's gater drops revoked peers right after the encryption handshake.
      throw new InviteError(`the coordinator closed the connection without answering (${err.message}); this node may have been revoked from the cluster, ask the cluster's operator`, 'closed')
    })
    checkCompatible({ llamaCppTag: bundledLlamaCppSource().tag, features: LOCAL_FEATURES }, welcome, 'the coordinator')
    if (welcome.issued === undefined) throw new InviteError('the coordinator accepted the invite but issued no certificate; ask for a new invite', 'no-certificate')
    await verifyCertificate(welcome.certificate, connection.remotePeer.toString(), trust)
    return { certificate: welcome.issued, coordinator: welcome.certificate, revocations: welcome.revocations }
  } finally {
    await node.stop()
  }
}
