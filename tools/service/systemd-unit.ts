// The systemd unit that keeps a mesh node running: `mesh start` with the user's flags, restarted
// on failure, sandboxed along systemd's hardening guidance (systemd.exec(5)). Pure text: no I/O.

export type ServiceScope = 'system' | 'user'

export interface UnitInput {
  role: 'coordinator' | 'worker'
  scope: ServiceScope
  /** the whole command line: node, the mesh entry, `start`, flags (absolute paths) */
  command: readonly string[]
  /** where the llama.cpp builds are (read-only for the node) */
  cacheDir: string
  /** system scope: the account the node runs as */
  user?: string
  /** `--mlock`: the node may lock memory (CAP_IPC_LOCK, no memlock limit) */
  mlock: boolean
}

/** Name of the unit of `role`, one per role and scope. */
export function unitName (role: UnitInput['role']): string {
  return `llmesh-${role}.service`
}

/** One ExecStart word, quoted for systemd (which also expands `%` specifiers and `$` variables). */
export function systemdWord (word: string): string {
  const escaped = word.replace(/%/g, '%%').replace(/\$/g, '$$$$')
  return /^[A-Za-z0-9_@+=:,./-]+$/.test(escaped) ? escaped : `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
}

/** The unit file's text. */
export function renderUnit (input: UnitInput): string {
  const lines = [
    '[Unit]',
    `Description=llmesh ${input.role} node (mesh start)`,
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=exec',
    `ExecStart=${input.command.map(systemdWord).join(' ')}`,
    // The node's data dir (keys 0600, certificate, datastore) lives in its own state directory:
    // /var/lib/llmesh for the system, ~/.local/state/llmesh for a user; %S names either.
    'StateDirectory=llmesh',
    'StateDirectoryMode=0700',
    'Environment=LLMESH_HOME=%S/llmesh',
    `Environment=${systemdWord(`LLMESH_CACHE=${input.cacheDir}`)}`,
    ...(input.scope === 'system' && input.user !== undefined ? [`User=${input.user}`] : []),
    'Restart=on-failure',
    'RestartSec=5s',
    // SIGTERM drains the API (requests in flight finish, --drain-timeout 30 s by default).
    'KillSignal=SIGTERM',
    'TimeoutStopSec=90s',
    'NoNewPrivileges=yes',
    'ProtectSystem=strict',
    'ProtectHome=read-only',
    'PrivateTmp=yes',
    'ProtectKernelTunables=yes',
    'ProtectKernelModules=yes',
    'ProtectKernelLogs=yes',
    'ProtectControlGroups=yes',
    'ProtectClock=yes',
    'ProtectHostname=yes',
    'RestrictSUIDSGID=yes',
    'RestrictRealtime=yes',
    'RestrictNamespaces=yes',
    'LockPersonality=yes',
    'SystemCallArchitectures=native',
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK',
    'UMask=0077',
    // No core dumps: a crash must not write keys, prompts or replies to disk (the node also
    // turns them off itself).
    'LimitCORE=0',
    ...(input.mlock
      ? ['CapabilityBoundingSet=CAP_IPC_LOCK', 'AmbientCapabilities=CAP_IPC_LOCK', 'LimitMEMLOCK=infinity']
      : ['CapabilityBoundingSet=']),
    '',
    '[Install]',
    `WantedBy=${input.scope === 'system' ? 'multi-user.target' : 'default.target'}`,
    ''
  ]
  return lines.join('\n')
}
