/**
 * The agent's systemd unit (`agent install-service`), each directive with
 * why. What the agent really does as a service: it dials the controller,
 * runs `ssh -R` to the backup server, reports /etc/passwd and /etc/group, and
 * restores archives as root wherever its restore policy allows (by default
 * anywhere, /tmp and /home included). So it runs as root and keeps its view
 * of the whole file system, but none of the kernel's knobs.
 */
import { execStart } from '@borgpull/protocol';
import { DEFAULT_AGENT_STATE_DIR } from './state.js';

export const AGENT_UNIT_NAME = 'borgpull-agent';

/** The unit text for `program` (this executable's argv prefix) and a state dir. */
export function agentUnit(program: readonly string[], stateDir: string): string {
  const argv = [...program, 'run', ...(stateDir === DEFAULT_AGENT_STATE_DIR ? [] : ['--state-dir', stateDir])];
  return `# Written by 'agent install-service'; 'agent uninstall-service' removes it.
[Unit]
Description=borgpull agent (pulled BorgBackup: keeps a connection to the controller)
Documentation=https://github.com/borgpull/borgpull#running-as-a-service
# It dials out: start once the network is up, not merely configured.
Wants=network-online.target
After=network-online.target
# No start limit: an agent never gives up (a client left alone must come back
# after, say, a full disk); RestartSec below spaces the tries.
StartLimitIntervalSec=0

[Service]
Type=exec
ExecStart=${execStart(argv)}
# A crash or a failed start is retried 15 s later, forever (systemd 252 has no
# RestartSteps); the agent's own reconnects back off 0.5 s to 30 s with jitter.
Restart=on-failure
RestartSec=15s
# Exit status 2 is a usage error: restarting would not fix it.
RestartPreventExitStatus=2
# Logs: pino's JSON lines on stdout, to journald (journalctl -u ${AGENT_UNIT_NAME}).
StandardOutput=journal
StandardError=journal
# SIGTERM: the agent closes its tunnel and session; ssh children go with it.
KillMode=mixed
TimeoutStopSec=30s

# Hardening: what the agent needs and no more.
# Root: restores write any owner, mode and device node the archive holds.
User=root
# ...with only the capabilities tar-like restores use: owners, modes with
# setuid/setgid bits, times on others' files, device nodes, reading anything.
CapabilityBoundingSet=CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_MKNOD
AmbientCapabilities=
# Nothing it runs (ssh, ssh-keygen) needs to gain privileges.
NoNewPrivileges=yes
# The kernel is not the agent's business: no sysctl, modules, cgroups, clock, logs.
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# It makes no namespaces (ssh and restores run in the host's).
RestrictNamespaces=yes
RestrictRealtime=yes
LockPersonality=yes
SystemCallArchitectures=native
# @system-service holds what node, ssh and restores use (@file-system has
# mknod and utimensat, @chown lchown); anything else fails with EPERM.
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
# Sockets: IPv4/IPv6 to the controller and the tunnel, Unix for ssh's control socket.
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
# MemoryDenyWriteExecute stays off: V8's JIT maps code pages writable and then
# executable; under it node dies at start-up (SIGTRAP in
# v8::base::OS::SetPermissions, seen with Node 20 and PR_SET_MDWE).
MemoryDenyWriteExecute=no
# Off on purpose: a restore may target any directory its policy allows,
# /tmp, /home and /usr included; a private /tmp or a read-only tree would
# silently swallow the restored files.
PrivateTmp=no
ProtectHome=no
ProtectSystem=no
# Off: an archive restores setuid/setgid files and device nodes as they were
# (PrivateDevices would also take CAP_MKNOD away).
RestrictSUIDSGID=no
PrivateDevices=no

[Install]
WantedBy=multi-user.target
`;
}
