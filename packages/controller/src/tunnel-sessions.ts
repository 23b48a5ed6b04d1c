import { errnoCode } from '@borgpull/protocol';
import { readFile, readdir, readlink } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Logger } from 'pino';

/**
 * Ending a revoked agent's live tunnel. Removing its key line stops new
 * logins, but an sshd session that already authenticated with that key keeps
 * running (and keeps the client's sshd reachable from the server) until the
 * client closes it; and as long as it runs it may ask for its forward again,
 * since sshd keeps the key's permitlisten for the session.
 *
 * Each session is one unprivileged sshd process running as the tunnel user
 * (its [priv] monitor runs as root and exits with it). Found through /proc:
 * - the one listening on the agent's port (/proc/net/tcp inode -> /proc/PID/fd);
 * - and any tunnel-user session holding no listener at all once it is older
 *   than IDLE_AFTER_MS: an agent's tunnel asks for its forward right after
 *   logging in (ExitOnForwardFailure), so such a session is no agent's live
 *   tunnel, and may be the revoked client's spare login.
 * Only a process in this network namespace whose binary is sshd and which
 * runs as the tunnel user (as that sshd resolved it) is ever signalled.
 */

export interface EndedSession {
  pid: number;
  reason: 'holds the port' | 'idle session';
}

export interface SkippedHolder {
  pid: number;
  reason: string;
}

/** A tunnel-user session without a listener is left alone this long after it started. */
export const IDLE_AFTER_MS = 5_000;

const MAX_PROC_FILE = 4 * 1024 * 1024;

/** Listening TCP sockets in a /proc/net/tcp{,6} text: inode -> {port, loopback or any address}. */
export function listeningSockets(procNetTcp: string): Map<number, { port: number; addr: string }> {
  const out = new Map<number, { port: number; addr: string }>();
  for (const line of procNetTcp.slice(0, MAX_PROC_FILE).split('\n').slice(1)) {
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    const f = line.trim().split(/\s+/);
    const [addr, portHex] = (f[1] ?? '').split(':');
    if (f[3] !== '0A' || addr === undefined || portHex === undefined || !/^[0-9A-F]{4}$/.test(portHex)) continue;
    const inode = Number(f[9]);
    if (Number.isSafeInteger(inode) && inode > 0) out.set(inode, { port: parseInt(portHex, 16), addr });
  }
  return out;
}

/** Inodes of the sockets listening on 127.0.0.1:port (or any address; 0100007F is 127.0.0.1 little-endian). */
export function listeningInodes(procNetTcp: string, port: number): number[] {
  return [...listeningSockets(procNetTcp)]
    .filter(([, s]) => s.port === port && (s.addr === '0100007F' || s.addr === '00000000'))
    .map(([inode]) => inode);
}

/** The uid of `user` in a passwd file's text (bounded), or undefined. */
export function uidIn(passwd: string, user: string): number | undefined {
  for (const line of passwd.slice(0, MAX_PROC_FILE).split('\n')) {
    const f = line.split(':');
    if (f[0] !== user || f.length < 7) continue;
    const uid = Number(f[2]);
    return Number.isSafeInteger(uid) && uid >= 0 ? uid : undefined;
  }
  return undefined;
}

/** Milliseconds since the process started, from /proc/PID/stat (field 22, clock ticks since boot). */
export function ageMs(stat: string, uptimeSeconds: number, ticksPerSecond = 100): number | undefined {
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const start = Number(rest[19]);
  if (!Number.isFinite(start) || !Number.isFinite(uptimeSeconds)) return undefined;
  return uptimeSeconds * 1000 - (start / ticksPerSecond) * 1000;
}

/** Why pid is not the tunnel user's sshd (undefined: it is). */
async function notTunnelSshd(pid: number, tunnelUser: string): Promise<string | undefined> {
  const exe = await readlink(`/proc/${pid}/exe`).catch(() => '');
  // Debian's 9.2 runs sessions in `sshd`; OpenSSH 9.8+ in `sshd-session`.
  if (!['sshd', 'sshd-session'].includes(basename(exe))) return `not sshd (${exe || 'unknown'})`;
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const uids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status)?.slice(1).map(Number);
  if (!uids) return 'no uid';
  // The tunnel user as that sshd itself resolved it: its own root's passwd
  // (the same file as ours unless sshd runs in another mount namespace).
  const passwd = await readFile(`/proc/${pid}/root/etc/passwd`, 'utf8').catch(() => '');
  const uid = uidIn(passwd, tunnelUser);
  if (uid === undefined || uid === 0) return `no usable uid for ${tunnelUser}`;
  if (!uids.every((u) => u === uid)) return `runs as uid ${uids.join('/')}, not ${tunnelUser} (${uid})`;
  return undefined;
}

async function socketInodes(pid: number): Promise<Set<number>> {
  const out = new Set<number>();
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  for (const fd of fds) {
    const m = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ''));
    if (m) out.add(Number(m[1]));
  }
  return out;
}

/**
 * Ends the revoked agent's tunnel sessions (see above). Returns what was
 * killed and what holds the port but was left alone; both are logged.
 */
export async function endTunnelSession(
  port: number,
  tunnelUser: string,
  log: Logger,
  opts: { idleAfterMs?: number } = {},
): Promise<{ ended: EndedSession[]; skipped: SkippedHolder[] }> {
  const idleAfterMs = opts.idleAfterMs ?? IDLE_AFTER_MS;
  const tcp = (await readFile('/proc/net/tcp', 'utf8').catch(() => '')) + (await readFile('/proc/net/tcp6', 'utf8').catch(() => ''));
  const listeners = listeningSockets(tcp);
  const onPort = new Set(listeningInodes(tcp, port));
  const uptime = Number((await readFile('/proc/uptime', 'utf8').catch(() => '')).split(' ')[0]);
  // /proc/net/tcp shows this network namespace only: an sshd elsewhere (another
  // namespace's sshd, with listeners we cannot see) is never looked at.
  const ourNet = await readlink('/proc/self/ns/net').catch(() => 'unknown');
  const ended: EndedSession[] = [];
  const skipped: SkippedHolder[] = [];
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const pid = Number(d);
    if ((await readlink(`/proc/${pid}/ns/net`).catch(() => '')) !== ourNet) continue;
    const isSshd = ['sshd', 'sshd-session'].includes(basename(await readlink(`/proc/${pid}/exe`).catch(() => '')));
    // Other processes matter only as holders of the port (to be reported, never killed).
    if (!isSshd && onPort.size === 0) continue;
    const sockets = await socketInodes(pid);
    const holdsPort = [...sockets].some((i) => onPort.has(i));
    if (!holdsPort && !isSshd) continue;
    const reason = await notTunnelSshd(pid, tunnelUser);
    if (reason !== undefined) {
      if (holdsPort) {
        skipped.push({ pid, reason });
        log.warn({ pid, port, reason }, "a process that is not the tunnel user's sshd listens on a revoked agent's port; left alone");
      }
      continue;
    }
    let why: EndedSession['reason'] | undefined;
    if (holdsPort) why = 'holds the port';
    else if (![...sockets].some((i) => listeners.has(i))) {
      const age = ageMs(await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => ''), uptime);
      if (age !== undefined && age >= idleAfterMs) why = 'idle session';
    }
    if (why === undefined) continue;
    try {
      process.kill(pid, 'SIGTERM');
      ended.push({ pid, reason: why });
      log.warn({ pid, port, reason: why }, "ended a revoked agent's tunnel session (the tunnel user's sshd process)");
    } catch (err) {
      skipped.push({ pid, reason: errnoCode(err) ?? 'kill failed' });
    }
  }
  return { ended, skipped };
}
