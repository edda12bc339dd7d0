import './polyfill.js'
import { unlink } from 'node:fs/promises'
import { setTimeout as delay } from 'node:timers/promises'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { bundledLlamaCppSource } from '../engine/llama-cpp/source.js'
import { describeExit } from '../engine/child-process.js'
import { memoryLockStatus } from '../engine/process-hardening.js'
import { startRpcServer, type RpcServer } from '../engine/rpc-server.js'
import { readCpuBudget } from '../engine/cpu-budget.js'
import { messageCapFor } from '../protocols/rpc-tunnel/index.js'
import { authStreamHandler, requestAdmission } from '../protocols/auth/auth-handshake.js'
import { AUTH_PROTOCOL, AUTH_TIMEOUT_MS } from '../protocols/auth/constants.js'
import { nativeSockets } from './native-socket.js'
import { localCapabilities, type Capabilities } from './capabilities.js'
import { CAPABILITY_LOOKUP_MS, capabilitySelectors, capabilityValidators, findCapabilityRecord, publishCapabilityRecord, signCapabilityRecord } from './capability-records.js'
import type { Role } from './certificate.js'
import { LOCAL_FEATURES } from './features.js'
import { listenControlSocket, type ControlRequest } from './control-socket.js'
import { caPublicKey, loadPrivateKey, openDatastore, readClusterConfig, type DataDir } from './data-dir.js'
import { AuthRefusedError, ControlRequestError, DataDirError } from './errors.js'
import { FailureDetector } from './failure-detector.js'
import { createLibp2pNode, type Encryption, type MeshServices } from './libp2p-node.js'
import { MemberGossip } from './member-gossip.js'
import { forgetNonMembers } from './member-only-components.js'
import { Membership } from './membership.js'
import { MembershipStore } from './membership-store.js'
import { ApiKeyStore, apiKeyControl } from './api-keys.js'
import { PROBE_MS } from './probe.js'
import { NodeMetrics } from './metrics.js'
import { AuditLedger, answerAuditRequest } from './audit-ledger.js'
import { MemberFlaps } from './member-flaps.js'
import { registerMemberMetrics } from './member-metrics.js'
import { statusWarnings } from './status-warnings.js'
import { shortPeerId } from './short-peer-id.js'
import { RedialBackoff, resolvePeerAddress } from './static-peers.js'
import { SequenceHighWater } from './sequence-high-water.js'
import type { Log } from './log.js'
import type { StatusReport, MemberStatus, TokenTime } from './status-report.js'
import type { Connection, PrivateKey } from '@libp2p/interface'
import type { Libp2p } from 'libp2p'
import type { LevelDatastore } from 'datastore-level'
import type { Server } from 'node:net'
import type { EngineStatus } from './serving/engine-status.js'

/** How `mesh start` runs a node. */
export interface MeshNodeOptions {
  dir: DataDir
  role: Role
  /** listen multiaddrs (default: TCP 9090 on all interfaces) */
  listen: string[]
  /** workers: the TCP port of the tunnel's data channel, on the hosts of `listen` (default: a free port) */
  tunnelPort?: number
  /** static peers: multiaddrs or host:port (DNS names are resolved) */
  peers: string[]
  encryption: Encryption
  mdns: boolean
  /** memory offered to the cluster (default: free memory at start) */
  memoryBytes?: number
  /**
   * compute threads of the process that computes for the cluster here: the coordinator's
   * llama-servers or the worker's rpc-server (default: the CPU budget's); the speed this node
   * offers is theirs
   */
  computeThreads?: number
  /** port of the coordinator's HTTP API, shown by `mesh status` */
  apiPort: number
  log: Log
}

const DIAL_MS = 2000
/** How often a connected static peer is checked for a lost connection. */
const STATIC_PEER_CHECK_MS = 1000
const CAPABILITY_REPUBLISH_MS = 30_000
/** How long after a member arrives this node republishes its capability record there. */
const REPUBLISH_AFTER_ARRIVAL_MS = 1000

export { shortPeerId }

/**
 * A running mesh node: the libp2p peer with the membership layer, the auth handshake,
 * heartbeats, the failure detector, capability records and the control socket.
 */
export class MeshNode {
  readonly libp2p: Libp2p<MeshServices>
  readonly membership: Membership
  /** join/leave/suspect/dead/revoked events */
  readonly events: FailureDetector
  readonly metrics: NodeMetrics
  readonly capabilities: Capabilities
  /** the API keys `mesh key add` created, which the coordinator's API accepts */
  readonly apiKeys: ApiKeyStore
  private readonly options: MeshNodeOptions
  private readonly datastore: LevelDatastore
  private readonly privateKey: PrivateKey
  /** the newest capability record seen of each member, this one included */
  private readonly newestRecords: SequenceHighWater
  private readonly gossip: MemberGossip
  private readonly rtt = new Map<string, number>()
  private readonly staticPeers = new Map<string, string>()
  private readonly dialFailures = new Set<string>()
  private readonly stopped = new AbortController()
  private readonly timers: NodeJS.Timeout[] = []
  private readonly rpcServer: RpcServer | undefined
  private control: Server | undefined
  private stopping = false
  private engineStatus: (() => EngineStatus) | undefined
  private tokenTimes: ((peerId: string) => TokenTime | null) | undefined
  /** the hash-chained ledger of finished API requests, in this node's datastore */
  readonly audit: AuditLedger
  private readonly flaps: MemberFlaps

  private constructor (fields: { options: MeshNodeOptions, privateKey: PrivateKey, libp2p: Libp2p<MeshServices>, membership: Membership, metrics: NodeMetrics, datastore: LevelDatastore, capabilities: Capabilities, rpcServer: RpcServer | undefined, apiKeys: ApiKeyStore, newestRecords: SequenceHighWater }) {
    this.options = fields.options
    this.libp2p = fields.libp2p
    this.membership = fields.membership
    this.metrics = fields.metrics
    this.datastore = fields.datastore
    this.privateKey = fields.privateKey
    this.newestRecords = fields.newestRecords
    this.capabilities = fields.capabilities
    this.rpcServer = fields.rpcServer
    this.apiKeys = fields.apiKeys
    this.events = new FailureDetector()
    this.gossip = new MemberGossip({ pubsub: this.libp2p.services.pubsub, membership: this.membership, detector: this.events, metrics: this.metrics, capabilities: this.capabilities })
    this.audit = new AuditLedger(this.datastore)
    this.flaps = new MemberFlaps(this.events)
    registerMemberMetrics(this.metrics.registry, async () => (await this.status()).members)
  }

  /** Loads the data dir and starts the node; a missing or corrupt data dir is a DataDirError. */
  static async start (options: MeshNodeOptions): Promise<MeshNode> {
    const { dir } = options
    const config = await readClusterConfig(dir)
    const privateKey = await loadPrivateKey(dir.nodeKey, 'the node key')
    const peerId = peerIdFromPrivateKey(privateKey).toString()
    const datastore = await openDatastore(dir)
    try {
      const store = new MembershipStore(datastore)
      const apiKeys = await ApiKeyStore.open(datastore)
      const selfCertificate = await store.selfCertificate()
      if (selfCertificate === undefined) throw new DataDirError(`${dir.root} holds no membership certificate; run "mesh join <invite>" (or "mesh init" on the coordinator) first`)
      if (selfCertificate.body.peerId !== peerId) throw new DataDirError(`the certificate in ${dir.root} belongs to ${selfCertificate.body.peerId}, not to this node's key ${peerId}; the data dir is inconsistent, join the cluster again`)
      if (selfCertificate.body.role !== options.role) throw new DataDirError(`this node's certificate is for the ${selfCertificate.body.role} role; start it with --role ${selfCertificate.body.role}`)
      const caKey = options.role === 'coordinator' ? await loadPrivateKey(dir.caKey, 'the cluster CA key') : undefined
      const metrics = new NodeMetrics()
      const llamaCppTag = bundledLlamaCppSource().tag
      const membership = await Membership.load({
        peerId, config, caPublicKey: caPublicKey(config), store, selfCertificate, caKey, metrics,
        build: { llamaCppTag, features: LOCAL_FEATURES }
      })
      const peers = [...options.peers, ...config.coordinatorAddrs]
      const computeThreads = options.computeThreads ?? (await readCpuBudget()).threads
      const capabilities = localCapabilities(llamaCppTag, { computeThreads, memoryBytes: options.memoryBytes })
      // What this node lends while it can (its offer falls to 0 if rpc-server is given up on).
      const offeredBytes = capabilities.memoryBytes
      // A worker lends its memory through rpc-server, which only the coordinator reaches, through the tunnel.
      const rpcServer = options.role === 'worker' ? await startRpcServer({ dataDir: dir.root, threads: computeThreads }) : undefined
      const newestRecords = new SequenceHighWater(datastore, '/llmesh/seq/caps')
      const sockets = nativeSockets()
      if (sockets.addon === undefined) options.log('warn', `the tunnel runs on Node's sockets and TLS, at a higher cost per message: its native socket addon cannot be built (${sockets.why})`)
      try {
        const libp2p = await createLibp2pNode({
          privateKey,
          datastore,
          listen: options.listen,
          quic: [...options.listen, ...peers].some(a => a.includes('/quic')),
          encryption: options.encryption,
          mdns: options.mdns,
          membership,
          metrics,
          dhtValidators: capabilityValidators(membership.trust, newestRecords, metrics),
          dhtSelectors: capabilitySelectors(),
          nativeSockets: sockets.addon,
          rpcBridge: rpcServer === undefined
            ? undefined
            : {
                authorize: peer => membership.certificateOf(peer.toString())?.body.role === 'coordinator',
                rpcServerPort: () => rpcServer.port,
                // The coordinator sets the cap from its plan; no plan puts more on this worker than it offers.
                messageCapCeiling: () => messageCapFor(offeredBytes),
                // Nor does any plan give it more tensors to keep than it offers memory for.
                tensorCache: { dir: dir.tensorCache, maxBytes: () => offeredBytes },
                dataChannelPort: options.tunnelPort,
                nodeLog: options.log
              }
        })
        const node = new MeshNode({ options: { ...options, peers }, privateKey, libp2p, membership, metrics, datastore, capabilities, rpcServer, apiKeys, newestRecords })
        try {
          await node.run()
        } catch (err) {
          await libp2p.stop()
          throw err
        }
        return node
      } catch (err) {
        await rpcServer?.dispose()
        throw err
      }
    } catch (err) {
      await datastore.close().catch(() => {})
      throw err
    }
  }

  private get log (): Log {
    return this.options.log
  }

  private async run (): Promise<void> {
    const { libp2p, membership, events, log } = this
    await libp2p.handle(AUTH_PROTOCOL, authStreamHandler(membership, this.metrics))
    libp2p.addEventListener('connection:open', (evt) => { this.onConnection(evt.detail) })
    libp2p.addEventListener('peer:disconnect', (evt) => {
      const peer = evt.detail.toString()
      membership.forget(peer)
      events.suspect(peer)
      void forgetNonMembers(libp2p.peerStore, membership, evt.detail)
    })
    libp2p.addEventListener('peer:discovery', (evt) => {
      // mDNS finds peers but does not dial them. Only members are dialled: anyone on the LAN
      // can announce itself, and a dial sends it this node's certificate.
      const id = evt.detail.id
      if (membership.isMember(id.toString()) && libp2p.getConnections(id).length === 0) libp2p.dial(id).catch(() => {})
    })
    membership.on('redemption-failures', (source, failures) => {
      log('warn', `${failures} failed invite redemptions from ${source} within a minute; further tries from there are refused unheard for a while`)
    })
    membership.on('authenticated', (peer, cert) => {
      if (events.state(peer) !== 'alive') log('info', `peer ${shortPeerId(peer)} authenticated as ${cert.body.role} (certificate serial ${cert.body.serial})`)
      events.seen(peer)
    })
    membership.on('revoked', (peer) => {
      events.revoked(peer)
      // Aborted, not closed gracefully: a revoked peer gets no time to finish anything.
      for (const connection of libp2p.getConnections(peerIdFromString(peer))) connection.abort(new Error('peer revoked'))
    })
    events.on('join', peer => {
      log('info', `member ${shortPeerId(peer)} joined`)
      // Members heard through gossip get a direct connection too, so the DHT keeps
      // every capability record on every member (readable without the coordinator).
      const id = peerIdFromString(peer)
      if (libp2p.getConnections(id).length === 0) libp2p.dial(id, { signal: AbortSignal.timeout(DIAL_MS * 2) }).catch(() => {})
    })
    events.on('leave', peer => { log('info', `member ${shortPeerId(peer)} left`) })
    events.on('suspect', peer => { log('warn', `member ${shortPeerId(peer)} is suspect`) })
    events.on('dead', (peer, silentMs) => {
      log('warn', `member ${shortPeerId(peer)} declared dead after ${silentMs} ms without contact`)
      this.dropConnections(peer, 'declared dead')
    })
    events.on('failed', (peer, reason) => {
      log('warn', `member ${shortPeerId(peer)} declared dead: ${reason}`)
      this.dropConnections(peer, reason)
    })
    events.on('revoked', peer => { log('warn', `member ${shortPeerId(peer)} revoked; its connections are closed`) })

    await forgetNonMembers(libp2p.peerStore, membership)
    await libp2p.start()
    this.control = await listenControlSocket(this.options.dir.controlSocket, async (request) => this.handleControl(request))
    this.gossip.start()
    events.start()
    this.timers.push(setInterval(() => { this.readRtt() }, PROBE_MS))
    this.timers.push(setInterval(() => { void this.publishCapabilities() }, CAPABILITY_REPUBLISH_MS))
    // Each new member is a new place for the record to live: republish a moment after the first
    // of a burst of arrivals, once the DHT has them in its routing table. Not a moment after
    // the last: members joining one after another would keep pushing the record back, and a
    // node stopped meanwhile would have published it nowhere.
    let pending: NodeJS.Timeout | undefined
    membership.on('authenticated', () => {
      pending ??= setTimeout(() => {
        pending = undefined
        void this.publishCapabilities()
      }, REPUBLISH_AFTER_ARRIVAL_MS).unref()
    })
    for (const target of this.options.peers) void this.keepDialing(target)
    const cert = membership.selfCertificate.body
    log('info', `node ${libp2p.peerId.toString()} started as ${cert.role} of cluster ${cert.clusterId} (llama.cpp ${cert.llamaCppTag})`)
    for (const addr of libp2p.getMultiaddrs()) log('info', `listening on ${addr.toString()}`)
    log('info', `gated protocols: ${libp2p.services.gate.gated.join(', ')}`)
    this.rpcServer?.on('exit', exit => { log('warn', `rpc-server ${describeExit(exit)}`) })
    this.rpcServer?.on('failed', reason => {
      log('error', `${reason}; this worker now offers no memory until it is restarted`)
      // Heartbeats and the capability record carry the offer: the coordinator plans without
      // this worker instead of failing on it again after every hold-off.
      this.capabilities.memoryBytes = 0
      void this.publishCapabilities()
    })
    this.rpcServer?.on('restart', ({ port }) => { log('info', `rpc-server restarted on port ${port}`) })
    this.rpcServer?.on('restart', () => { this.metrics.engineRestarted('rpc-server') })
  }

  private onConnection (connection: Connection): void {
    const peer = connection.remotePeer.toString()
    if (connection.direction === 'outbound') {
      void this.authenticate(connection)
      return
    }
    // The dialer must authenticate; a connection that never does is closed. The extra
    // second lets a stalled handshake stream time out (and be counted) first.
    setTimeout(() => {
      if (connection.status === 'open' && !this.membership.isAuthenticated(peer)) {
        this.metrics.refusedPeer('no-handshake')
        this.log('warn', `peer ${shortPeerId(peer)} at ${connection.remoteAddr.toString()} did not authenticate within ${AUTH_TIMEOUT_MS + 1000} ms; disconnected`)
        connection.abort(new Error('no membership handshake'))
      }
    }, AUTH_TIMEOUT_MS + 1000).unref()
  }

  private async authenticate (connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    try {
      const welcome = await requestAdmission(connection, this.membership.hello(), this.metrics)
      await this.membership.admitWelcome(peer, welcome)
    } catch (err) {
      if (this.stopping || connection.status !== 'open') return
      const reason = err instanceof AuthRefusedError ? `refused us: ${(err as Error).message}` : (err as Error).message
      this.log('warn', `peer ${shortPeerId(peer)} at ${connection.remoteAddr.toString()} ${reason}`)
      // Refused as an inbound peer that fails is: counted, disconnected, and a peer that
      // proved no member is not dialled again for a while.
      this.membership.refused(connection, err as Error)
    }
  }

  // libp2p's connection monitor pings every connection each PROBE_MS and aborts those
  // that stop answering; this only reads the RTT it measured.
  private readRtt (): void {
    for (const connection of this.libp2p.getConnections()) {
      if (connection.rtt !== undefined && connection.status === 'open') this.rtt.set(connection.remotePeer.toString(), connection.rtt)
    }
  }

  // A dead member's connection may be a half-open TCP session (link down, process paused):
  // dropping it makes a returning member reconnect and authenticate afresh.
  private dropConnections (peer: string, why: string): void {
    for (const connection of this.libp2p.getConnections(peerIdFromString(peer))) connection.abort(new Error(`member ${why}`))
  }

  // Keeps one static peer connected: checked every second while connected, redialled with a
  // capped, jittered backoff while not (a restarting coordinator is not hammered by every worker).
  private async keepDialing (target: string): Promise<void> {
    const backoff = new RedialBackoff()
    while (!this.stopping) {
      let wait = STATIC_PEER_CHECK_MS
      if (await this.dialStaticPeer(target)) backoff.succeeded()
      else wait = backoff.failed()
      await delay(wait, undefined, { signal: this.stopped.signal }).catch(() => {})
    }
  }

  /** Dials `target` unless it is connected already; true when it is connected afterwards. */
  private async dialStaticPeer (target: string): Promise<boolean> {
    const known = this.staticPeers.get(target) ?? /\/p2p\/([^/]+)$/.exec(target)?.[1]
    if (known !== undefined && (known === this.libp2p.peerId.toString() || this.libp2p.getConnections(peerIdFromString(known)).length > 0)) return true
    try {
      const addrs = await resolvePeerAddress(target)
      const connection = await this.libp2p.dial(addrs.length === 1 ? addrs[0] : addrs, { signal: AbortSignal.any([AbortSignal.timeout(DIAL_MS * 2), this.stopped.signal]) })
      this.staticPeers.set(target, connection.remotePeer.toString())
      if (this.dialFailures.delete(target)) this.log('info', `reached static peer ${target}`)
      return true
    } catch (err) {
      if (this.stopping || this.dialFailures.has(target)) return false
      this.dialFailures.add(target)
      this.log('warn', `cannot reach static peer ${target} (${(err as Error).message}); retrying with backoff`)
      return false
    }
  }

  private async publishCapabilities (): Promise<void> {
    if (this.stopping) return
    const peerId = this.libp2p.peerId.toString()
    const seq = Date.now()
    const value = await signCapabilityRecord({ peerId, seq, capabilities: this.capabilities, certificate: this.membership.selfCertificate }, this.privateKey)
    // kad-dht stores this node's own PUT without validating it: raise the mark here, or an
    // older record of this node put back by another member would replace the newest one here.
    await this.newestRecords.raise(peerId, seq)
    await publishCapabilityRecord(this.libp2p.services.dht, peerId, value, AbortSignal.timeout(10_000)).catch(() => 0)
  }

  /** Every known member's capabilities, read from the private DHT (works without the coordinator). */
  async clusterCapabilities (): Promise<Record<string, Capabilities>> {
    const out: Record<string, Capabilities> = { [this.libp2p.peerId.toString()]: this.capabilities }
    const peers = (await this.membership.knownMembers()).map(c => c.body.peerId)
    await Promise.all(peers.map(async peer => {
      const record = await findCapabilityRecord(this.libp2p.services.dht, peer, this.membership.trust, AbortSignal.timeout(CAPABILITY_LOOKUP_MS)).catch(() => undefined)
      if (record !== undefined) out[peer] = record.capabilities
    }))
    return out
  }

  /** Makes `mesh status` include the engine and stage plan (the coordinator's serving side calls it). */
  reportEngineStatus (provider: () => EngineStatus): void {
    this.engineStatus = provider
  }

  /** The last round-trip time to `peerId` that libp2p's connection monitor measured, in ms. */
  rttMs (peerId: string): number | null {
    return this.rtt.get(peerId) ?? null
  }

  /** Makes `mesh status` include each worker's time per token (the coordinator's tunnel timing provides it). */
  reportTokenTimes (provider: (peerId: string) => TokenTime | null): void {
    this.tokenTimes = provider
  }

  /** The members table of `mesh status`. */
  async status (): Promise<StatusReport> {
    const self = this.membership.selfCertificate.body
    const now = Date.now()
    const members: MemberStatus[] = []
    for (const cert of await this.membership.knownMembers()) {
      const peer = cert.body.peerId
      if (peer === self.peerId) continue
      const connections = this.libp2p.getConnections(peerIdFromString(peer)).filter(c => c.status === 'open')
      const live = connections[0] as Connection | undefined
      const caps = this.gossip.capabilities.get(peer)
      const lastSeen = this.events.lastSeen(peer)
      members.push({
        peerId: peer,
        role: cert.body.role,
        state: this.membership.isRevoked(peer) ? 'revoked' : this.events.state(peer) ?? 'dead',
        addresses: connections.map(c => c.remoteAddr.toString()),
        transport: live === undefined ? null : live.remoteAddr.toString().includes('/quic') ? 'quic' : 'tcp',
        encryption: live?.encryption ?? null,
        rttMs: this.rtt.get(peer) ?? null,
        lastSeenMs: lastSeen === undefined ? null : now - lastSeen,
        llamaCppTag: caps?.llamaCppTag ?? cert.body.llamaCppTag,
        memoryBytes: caps?.memoryBytes ?? null,
        cpuCores: caps?.cpuCores ?? null,
        computeGflops: caps?.computeGflops ?? null,
        timePerToken: this.tokenTimes?.(peer) ?? null
      })
    }
    const selfStatus = { peerId: self.peerId, role: self.role, clusterId: self.clusterId, addresses: this.libp2p.getMultiaddrs().map(String), llamaCppTag: self.llamaCppTag, memoryBytes: this.capabilities.memoryBytes, apiPort: this.options.apiPort, tunnelDataChannelPort: this.libp2p.services.rpcTunnel.dataChannelPort ?? null }
    const engine = this.engineStatus?.() ?? null
    return {
      self: selfStatus,
      members,
      engine,
      rpcServer: this.rpcServer === undefined ? null : { state: this.rpcServer.state, reason: this.rpcServer.failure ?? null, restarts: this.rpcServer.restarts },
      memoryLock: memoryLockStatus(),
      warnings: statusWarnings({ self: selfStatus, members, plans: engine?.groups?.map(group => group.plan) ?? (engine?.plan != null ? [engine.plan] : []), flaps: peer => this.flaps.count(peer), selfComputeGflops: this.capabilities.computeGflops })
    }
  }

  private async handleControl (request: ControlRequest): Promise<unknown> {
    this.log('debug', `control request "${request.op}"`)
    switch (request.op) {
      case 'status':
        return this.status()
      case 'token': {
        const role = request.role === 'coordinator' ? 'coordinator' : 'worker'
        const ttlMs = Number(request.ttlMs)
        if (!Number.isSafeInteger(ttlMs) || ttlMs < 1) throw new ControlRequestError('ttlMs must be a positive whole number of milliseconds')
        return this.membership.createInvite(role, ttlMs, this.libp2p.getMultiaddrs().map(String))
      }
      case 'revoke': {
        const list = await this.membership.revoke(String(request.peerId))
        await this.gossip.publishRevocations(list)
        this.log('info', `revoked ${String(request.peerId)} (revocation list version ${list.body.version})`)
        return { peerId: request.peerId, version: list.body.version }
      }
      case 'capabilities':
        return this.clusterCapabilities()
      case 'key-add':
      case 'key-list':
      case 'key-revoke':
        return await apiKeyControl(this.apiKeys, this.options.dir.apiKey, request)
      case 'metrics':
        return { text: await this.metrics.text() }
      case 'audit-tail':
      case 'audit-verify':
        return answerAuditRequest(this.audit, request)
      default:
        throw new ControlRequestError(`unknown control operation "${request.op}"`)
    }
  }

  /** Announces a clean leave, closes connections and flushes the datastore. */
  async stop (): Promise<void> {
    if (this.stopping) return
    this.stopping = true
    this.stopped.abort()
    this.timers.forEach(clearInterval)
    this.control?.close()
    await this.gossip.stop()
    // Gives the leave message a moment to go out before connections close.
    await delay(200)
    this.events.stop()
    await this.libp2p.stop()
    await this.rpcServer?.dispose()
    await this.datastore.close()
    await unlink(this.options.dir.controlSocket).catch(() => {})
  }
}
