/**
 * Creating one entry inside an open directory fd, never following a link at
 * the final component: files with O_CREAT|O_EXCL|O_NOFOLLOW after removing
 * what was there (as GNU tar does by default, so a planted hard link or
 * symlink is replaced, never written through), symlinks and nodes given
 * their owner, mode and times through an O_PATH fd of the entry itself.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  constants,
  fstatSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  renameSync,
  rmdirSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  type Stats,
} from 'node:fs';
import { DIR_FLAGS, O_PATH, Refused, at, errCode, inside, isRefused, openDir, untrustedLink, type LinkBudget } from './safe-dir.js';

const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = constants;
const FILE_FLAGS = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;
const RETRIES = 8;

/** Removes a non-directory, or an empty directory, at `name` (never recursively). */
export function removeEntry(dirFd: number, name: Buffer, where: string): void {
  const path = at(dirFd, name);
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (err) {
    if (errCode(err) === 'ENOENT') return;
    throw err;
  }
  try {
    if (st.isDirectory()) rmdirSync(path);
    else unlinkSync(path);
  } catch (err) {
    const code = errCode(err);
    if (code === 'ENOENT') return;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') throw new Refused(`${inside(where, name)} is a directory that is not empty`);
    throw err;
  }
}

/** Runs `create` until it does not meet an existing entry, removing that entry each time. */
function replacing(dirFd: number, name: Buffer, where: string, create: () => void): void {
  for (let i = 0; i < RETRIES; i++) {
    try {
      create();
      return;
    } catch (err) {
      if (errCode(err) !== 'EEXIST') throw err;
      removeEntry(dirFd, name, where);
    }
  }
  throw new Refused(`${inside(where, name)} kept changing while it was being replaced`);
}

/** A new regular file, open for writing (mode 0600 until its own mode is set). */
export function createFile(dirFd: number, name: Buffer, where: string): number {
  let fd = -1;
  replacing(dirFd, name, where, () => {
    fd = openSync(at(dirFd, name), FILE_FLAGS, 0o600);
  });
  return fd;
}

/** An open directory fd for a directory member, and whether it is a root-owned link that was kept. */
export function makeDir(dirFd: number, name: Buffer, where: string, links: LinkBudget): { fd: number; viaLink: boolean } {
  const path = at(dirFd, name);
  for (let i = 0; i < RETRIES; i++) {
    try {
      mkdirSync(path, 0o700);
    } catch (err) {
      if (errCode(err) !== 'EEXIST') throw err;
    }
    try {
      return { fd: openSync(path, DIR_FLAGS), viaLink: false };
    } catch (err) {
      const code = errCode(err);
      if (code === 'ENOENT') continue;
      if (code !== 'ENOTDIR' && code !== 'ELOOP') throw err;
    }
    let st: Stats;
    try {
      st = lstatSync(path);
    } catch (err) {
      if (errCode(err) === 'ENOENT') continue;
      throw err;
    }
    // A root-owned link to a directory is kept (merged /usr: bin -> usr/bin), as
    // --keep-directory-symlink did. Anyone else's link, or a file, is replaced
    // by a real directory, as GNU tar does without that flag.
    if (st.isSymbolicLink() && untrustedLink(dirFd, st, links) === undefined) {
      try {
        return { fd: openDir(dirFd, name, where, false, links), viaLink: true };
      } catch (err) {
        if (!isRefused(err)) throw err;
        // A root link to nothing usable: GNU tar would replace it too.
      }
    }
    removeEntry(dirFd, name, where);
  }
  throw new Refused(`${inside(where, name)} kept changing while it was being made a directory`);
}

/** Owner and times of the entry an O_PATH fd names (a symlink or a node): the kernel acts on it, not on a link target. */
function setByPathFd(p: number, uid: number, gid: number, mode: number | undefined, mtime: number): void {
  const self = `/proc/self/fd/${p}`;
  chownSync(self, uid, gid);
  if (mode !== undefined) chmodSync(self, mode);
  utimesSync(self, mtime, mtime);
}

/** A symlink; returns its stat (the caller remembers root-owned ones it made). */
export function createSymlink(dirFd: number, name: Buffer, where: string, text: Buffer, uid: number, gid: number, mtime: number): Stats {
  replacing(dirFd, name, where, () => symlinkSync(text, at(dirFd, name)));
  const p = openSync(at(dirFd, name), O_PATH | O_NOFOLLOW);
  try {
    const st = fstatSync(p);
    if (!st.isSymbolicLink()) throw new Refused(`${inside(where, name)} was replaced while it was being made`);
    setByPathFd(p, uid, gid, undefined, mtime);
    return st;
  } finally {
    closeSync(p);
  }
}

/**
 * A hard link to an existing entry; link(2) does not follow a symlink at the
 * source. The linked inode must have the member's (archived) owner: a user
 * who swapped her own file in at the source path would otherwise get a name
 * for it wherever the archive says (GNU tar links whatever is there).
 */
export function createHardlink(srcDirFd: number, srcName: Buffer, dirFd: number, name: Buffer, where: string, uid: number): void {
  replacing(dirFd, name, where, () => linkSync(at(srcDirFd, srcName), at(dirFd, name)));
  const p = openSync(at(dirFd, name), O_PATH | O_NOFOLLOW);
  let owner: number;
  try {
    owner = fstatSync(p).uid;
  } finally {
    closeSync(p);
  }
  if (owner !== uid) {
    unlinkSync(at(dirFd, name));
    throw new Refused(`its source is owned by uid ${owner}, not by uid ${uid} as archived`);
  }
}

let tmpSeq = 0;

/**
 * A fifo or device node. Node has no mknod(2): mknod(1) makes it under a
 * fresh name inside the directory, reached through this process's
 * /proc/PID/fd (children do not inherit Node's close-on-exec fds; root may
 * use another process's), then it is set up through an O_PATH fd and renamed
 * into place (rename replaces without following).
 */
export function createNode(
  dirFd: number,
  name: Buffer,
  where: string,
  kind: 'fifo' | 'chardev' | 'blockdev',
  major: number,
  minor: number,
  uid: number,
  gid: number,
  mode: number,
  mtime: number,
): void {
  const tmp = Buffer.from(`.borgpull-node-${process.pid}-${++tmpSeq}`);
  const args = kind === 'fifo' ? ['p'] : [kind === 'chardev' ? 'c' : 'b', String(major), String(minor)];
  execFileSync('mknod', ['-m', '0600', `/proc/${process.pid}/fd/${dirFd}/${tmp.toString()}`, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  try {
    const p = openSync(at(dirFd, tmp), O_PATH | O_NOFOLLOW);
    try {
      const st = fstatSync(p);
      const ok = kind === 'fifo' ? st.isFIFO() : kind === 'chardev' ? st.isCharacterDevice() : st.isBlockDevice();
      if (!ok) throw new Refused(`${inside(where, name)} was replaced while it was being made`);
      setByPathFd(p, uid, gid, mode, mtime);
    } finally {
      closeSync(p);
    }
    replacing(dirFd, name, where, () => {
      let st: Stats | undefined;
      try {
        st = lstatSync(at(dirFd, name));
      } catch {
        st = undefined;
      }
      if (st?.isDirectory()) {
        const e = new Error('a directory is in the way') as Error & { code: string };
        e.code = 'EEXIST';
        throw e;
      }
      renameSync(at(dirFd, tmp), at(dirFd, name));
    });
  } catch (err) {
    try {
      unlinkSync(at(dirFd, tmp));
    } catch {
      // already renamed, or never made
    }
    throw err;
  }
}
