import { existsSync, readdirSync } from 'node:fs';
import { cmdline, isAlive, nsInode } from './proc.js';
import { readMounts } from './mounts.js';
import { created } from './registry.js';

/** sshfs mounts that existed before the harness loaded (other users of the machine): ignored. */
const preexistingSshfs = new Set(
  readMounts()
    .filter((m) => m.fsType === 'fuse.sshfs')
    .map((m) => m.mountPoint),
);

/** A path under a directory or network namespace this process created. */
function ownPath(p: string): boolean {
  return [...created.dirs].some((d) => p === d || p.startsWith(`${d}/`)) || [...created.netnsNames].some((n) => p === `/run/netns/${n}`);
}

/**
 * Everything the harness may leave behind: fuse.sshfs mounts (new since load) and mounts under
 * harness dirs (host mount namespace), bpt-* network namespaces, harness temp
 * dirs, and live processes in a namespace the harness created or whose
 * command line names a harness dir. Empty = clean.
 */
export function findLeftovers(): string[] {
  const out: string[] = [];
  for (const m of readMounts()) {
    if (m.fsType === 'fuse.sshfs' && !preexistingSshfs.has(m.mountPoint)) out.push(`sshfs mount: ${m.mountPoint} (${m.source})`);
    else if (ownPath(m.mountPoint)) out.push(`mount: ${m.mountPoint} (${m.fsType})`);
  }
  // Only what this process created: another test run or a benchmark may be using the machine too.
  for (const n of created.netnsNames) if (existsSync(`/run/netns/${n}`)) out.push(`network namespace: ${n}`);
  for (const d of created.dirs) if (existsSync(d)) out.push(`directory: ${d}`);
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid || !isAlive(pid)) continue;
    const net = nsInode(pid, 'net');
    const mnt = nsInode(pid, 'mnt');
    const cmd = cmdline(pid);
    const ours =
      (net !== undefined && created.net.has(net)) ||
      (mnt !== undefined && created.mnt.has(mnt)) ||
      [...created.dirs].some((d) => cmd.includes(d));
    if (ours) out.push(`process ${pid}: ${cmd}`);
  }
  return out;
}

/** Throws listing every leftover (see findLeftovers). */
export function assertNoLeftovers(): void {
  const left = findLeftovers();
  if (left.length > 0) {
    throw new Error(
      `the test harness left things behind:\n  ${left.join('\n  ')}\n` +
        'clean up by hand: kill the processes, `fusermount3 -u` the mounts, `ip netns delete bpt-...`, then rmdir.',
    );
  }
}
