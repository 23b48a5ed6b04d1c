/**
 * The controller's systemd unit (`controller install-service`), each
 * directive with why. What the daemon really does: listens for agents and on
 * its admin socket (STATE/admin), runs `sshd -T` to check the tunnel rules,
 * and runs each job as root in a fresh mount and PID namespace (setpriv,
 * unshare) that mounts a client with sshfs, bind-mounts passwd/group there
 * and runs borg (or, with chroot isolation, chroots into an overlay). Every
 * file it writes is under its state directory.
 */
import { execStart, pathValue } from '@borgpull/protocol';
import { DEFAULT_STATE_DIR } from '../config.js';

export const CONTROLLER_UNIT_NAME = 'borgpull-controller';

/** The unit text for `program` (this executable's argv prefix) and a state dir. */
export function controllerUnit(program: readonly string[], stateDir: string): string {
  const argv = [...program, 'serve', ...(stateDir === DEFAULT_STATE_DIR ? [] : ['--state-dir', stateDir])];
  return `# Written by 'controller install-service'; 'controller uninstall-service' removes it.
[Unit]
Description=borgpull controller (pulled BorgBackup: agents, jobs, admin socket)
Documentation=https://github.com/borgpull/borgpull#running-as-a-service
# Agents dial it and tunnel into the local sshd, whose rules it checks at start.
Wants=network-online.target
After=network-online.target ssh.service
# Back-off: a failed start (unsafe sshd rules, a taken port) is retried every
# 5 s, at most 5 times in 5 minutes, then left failed for a person to see
# (systemctl status); systemd 252 has no RestartSteps/RestartMaxDelaySec.
StartLimitIntervalSec=300
StartLimitBurst=5

[Service]
Type=exec
ExecStart=${execStart(argv)}
Restart=on-failure
RestartSec=5s
# Exit status 2 is a usage error: restarting would not fix it.
RestartPreventExitStatus=2
# Logs: pino's JSON lines on stdout, to journald (journalctl -u ${CONTROLLER_UNIT_NAME}).
StandardOutput=journal
StandardError=journal
# SIGTERM: stop taking work, let running jobs finish for stopGrace (config,
# default 30s), then cancel them with full cleanup (kill, unmount, rmdir); then
# the rest of the group is killed. Jobs die with the daemon anyway (pdeathsig).
# Keep TimeoutStopSec above stopGrace plus a minute of cleanup.
KillMode=mixed
TimeoutStopSec=90s
# SIGHUP re-reads config.json (what needs a restart is logged).
ExecReload=/bin/kill -HUP $MAINPID

# Hardening: what the controller needs and no more.
# Root: mounts (sshfs, bind mounts, overlays) and namespaces need CAP_SYS_ADMIN,
# and borg reads the client's files as root through the mount.
User=root
# Capabilities: mounts and namespaces (SYS_ADMIN), chroot isolation
# (SYS_CHROOT), reading and owning files of any uid on the client mount and in
# the state dir (DAC_*, FOWNER, CHOWN), killing a job's processes (KILL), a
# listen port below 1024 (NET_BIND_SERVICE).
CapabilityBoundingSet=CAP_SYS_ADMIN CAP_SYS_CHROOT CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_CHOWN CAP_KILL CAP_NET_BIND_SERVICE
AmbientCapabilities=
# Its files are its own: every state file it shares (tunnel/, 0755) is chmod-ed explicitly.
UMask=0077
# As root nothing needs to gain privileges: sshfs mounts with mount(2) itself
# and fusermount3's setuid bit is never used (libfuse calls it only when
# mount(2) is refused to a non-root user).
NoNewPrivileges=yes
# Read-only /usr, /boot, /etc and the rest; only the state dir is written
# (repos, borg caches and temp files, job dirs, mountpoints, admin socket).
ProtectSystem=strict
ReadWritePaths=${pathValue(stateDir)}
# /home and /root read-only: it keeps nothing there (borg's HOME is in the state dir).
ProtectHome=read-only
# Nothing shares /tmp with it; a job's temp files go to the state dir.
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# A job is a mount and a PID namespace (unshare --mount --pid); no others.
RestrictNamespaces=mnt pid
RestrictRealtime=yes
# It never makes setuid/setgid files (the client mount is read-only).
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
# @system-service plus @mount (mount, umount2, chroot, pivot_root for jobs).
SystemCallFilter=@system-service @mount
SystemCallErrorNumber=EPERM
# IPv4/IPv6 for agents and the tunnels, Unix for the admin socket and ssh.
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
# MemoryDenyWriteExecute stays off: V8's JIT maps code pages writable and then
# executable; under it node dies at start-up (SIGTRAP in
# v8::base::OS::SetPermissions, seen with Node 20 and PR_SET_MDWE).
MemoryDenyWriteExecute=no
# PrivateDevices stays off (sshfs needs /dev/fuse); with DeviceAllow the
# device cgroup allows /dev/fuse and the pseudo devices (null, zero, urandom).
PrivateDevices=no
DeviceAllow=/dev/fuse rw

[Install]
WantedBy=multi-user.target
`;
}
