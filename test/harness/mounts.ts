import { errorMessage } from '@borgpull/protocol';
import { lstat, readdir, rm, rmdir } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { execa } from 'execa';

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
}

const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Mounts of the given process's mount namespace (default: our own = the host's). */
export function readMounts(pid: number | 'self' = 'self'): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n')) {
    if (line === '') continue;
    const [left, right] = line.split(' - ');
    const mountPoint = left?.split(' ')[4];
    const [fsType, source] = (right ?? '').split(' ');
    if (mountPoint !== undefined) {
      out.push({ mountPoint: unescape(mountPoint), fsType: fsType ?? '', source: unescape(source ?? '') });
    }
  }
  return out;
}

/** Mounts at `dir` or anywhere below it. */
export function mountsUnder(dir: string, pid: number | 'self' = 'self'): MountEntry[] {
  const base = dir.replace(/\/+$/, '');
  return readMounts(pid).filter((m) => m.mountPoint === base || m.mountPoint.startsWith(`${base}/`));
}

/**
 * Recursive delete that refuses to descend into another device (a second line of defence).
 * Names are walked as bytes: a client tree may hold names that are not UTF-8.
 */
async function removeTree(path: Buffer, dev: number): Promise<void> {
  const st = await lstat(path);
  if (st.dev !== dev) throw new Error(`refusing to delete ${path.toString()}: it is on another device (a mount?)`);
  if (st.isDirectory()) {
    for (const name of await readdir(path, { encoding: 'buffer' })) await removeTree(Buffer.concat([path, Buffer.from('/'), name]), dev);
    await rmdir(path);
  } else {
    await rm(path, { force: true });
  }
}

/**
 * Remove a harness temp dir, but ONLY when nothing is mounted under it (in the
 * host mount namespace). When something is, returns the problems, lazily
 * detaches those mounts (see detachMounts) and leaves the dir in place.
 */
export async function removeDirIfUnmounted(dir: string): Promise<string[]> {
  const left = mountsUnder(dir);
  if (left.length > 0) {
    const problems = left.map((m) => `still mounted: ${m.mountPoint} (${m.fsType} ${m.source}); NOT deleting ${dir}`);
    await detachMounts(left);
    return problems;
  }
  let dev: number;
  try {
    dev = (await lstat(dir)).dev;
  } catch {
    return [];
  }
  try {
    await removeTree(Buffer.from(dir), dev);
    return [];
  } catch (err) {
    return [`could not remove ${dir}: ${errorMessage(err)}`];
  }
}

/**
 * Lazily detach leaked mounts (deepest first) so later tests start clean.
 * Never deletes anything; the caller still reports the leak.
 */
export async function detachMounts(list: MountEntry[]): Promise<void> {
  const sorted = [...list].sort((a, b) => b.mountPoint.length - a.mountPoint.length);
  for (const m of sorted) {
    const cmd: [string, string[]] = m.fsType.startsWith('fuse')
      ? ['fusermount3', ['-u', '-z', m.mountPoint]]
      : ['umount', ['-l', m.mountPoint]];
    await execa(cmd[0], cmd[1], { reject: false });
  }
}
