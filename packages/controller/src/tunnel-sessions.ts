import { readFile, readdir, readlink } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Logger } from 'pino';

/**
 * Ending a revoked agent's live tunnel. Removing its key line stops new
 * tunnels, but the sshd session that already holds its reverse forward keeps
 * running (and keeps the client's sshd reachable from the server) until the
 * client closes it. That session is the tunnel user's sshd process listening
 * on 127.0.0.1:PORT in this network namespace: found through /proc/net/tcp
 * (socket inode) and /proc/PID/fd (its owner), and killed only if it is an
 * sshd binary running as the tunnel user. Nothing else is ever signalled.
 */

export interface EndedSession {
  pid: number;
}

export interface SkippedHolder {
  pid: number;
  reason: string;
}

const MAX_PROC_FILE = 4 * 1024 * 1024;

/** Inodes of the TCP sockets listening on 127.0.0.1:port (or any address) in this process's network namespace. */
export function listeningInodes(procNetTcp: string, port: number): number[] {
  const out: number[] = [];
  for (const line of procNetTcp.slice(0, MAX_PROC_FILE).split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    const [addr, portHex] = (f[1] ?? '').split(':');
    if (f[3] !== '0A' || portHex === undefined || parseInt(portHex, 16) !== port) continue;
    // 127.0.0.1 is 0100007F (little-endian); 00000000 is any address.
    if (addr !== '0100007F' && addr !== '00000000') continue;
    const inode = Number(f[9]);
    if (Number.isSafeInteger(inode) && inode > 0) out.push(inode);
  }
  return out;
}

/** Pids holding any of these socket inodes open. */
async function holders(inodes: readonly number[]): Promise<number[]> {
  const want = new Set(inodes.map((i) => `socket:[${i}]`));
  const pids: number[] = [];
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let fds: string[];
    try {
      fds = await readdir(`/proc/${d}/fd`);
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      const target = await readlink(`/proc/${d}/fd/${fd}`).catch(() => '');
      if (want.has(target)) {
        pids.push(Number(d));
        break;
      }
    }
  }
  return pids;
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

/**
 * Ends the tunnel user's sshd session listening on `port`. Returns what was
 * killed and what holds the port but was left alone (logged as well).
 */
export async function endTunnelSession(
  port: number,
  tunnelUser: string,
  log: Logger,
): Promise<{ ended: EndedSession[]; skipped: SkippedHolder[] }> {
  const tcp = await readFile('/proc/net/tcp', 'utf8').catch(() => '');
  const inodes = listeningInodes(tcp, port);
  const ended: EndedSession[] = [];
  const skipped: SkippedHolder[] = [];
  if (inodes.length === 0) return { ended, skipped };
  for (const pid of await holders(inodes)) {
    const reason = await notTunnelSshd(pid, tunnelUser);
    if (reason !== undefined) {
      skipped.push({ pid, reason });
      log.warn({ pid, port, reason }, 'a process that is not the tunnel user\'s sshd listens on a revoked agent\'s port; left alone');
      continue;
    }
    try {
      process.kill(pid, 'SIGTERM');
      ended.push({ pid });
      log.warn({ pid, port }, "ended a revoked agent's tunnel session (its sshd process)");
    } catch (err) {
      skipped.push({ pid, reason: (err as NodeJS.ErrnoException).code ?? 'kill failed' });
    }
  }
  return { ended, skipped };
}
