/**
 * Race-free directory walking for a restore that runs as root.
 *
 * Node has no openat(2), so it is emulated: every lookup is one component
 * relative to an open directory fd, through `/proc/self/fd/<fd>/<name>`
 * (the kernel jumps through the magic link to the directory itself, then
 * resolves `name` in it) opened with O_NOFOLLOW. A symlink found on the way is
 * followed only if root owns it AND only root can change the directory that
 * holds it (else a user could move a root-owned link into place): then its
 * text is walked with the same rules. Anything else is refused. Because each
 * step is decided on the fd of the real directory at the moment of the open,
 * swapping a directory for a link after a check gains nothing: there is no
 * check-then-use gap as there is with a path handed to GNU tar.
 */
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readlinkSync, type Stats } from 'node:fs';
import { AgentError } from '../errors.js';

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = constants;
export const DIR_FLAGS = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;
/** Linux O_PATH (not in fs.constants): an fd naming an entry, links included, without opening it. */
export const O_PATH = 0o10000000;
/** The kernel's own bound on links followed in one lookup. */
const MAX_LINKS = 40;
/** Lookups retried when the entry changes under us (ENOENT after ENOTDIR, EEXIST after ENOENT). */
const RETRIES = 8;

/** A member (or target) is not written: the message says why. */
export class Refused extends AgentError {
  override name = 'Refused';

  constructor(message: string) {
    super('E_RESTORE_REFUSED', message);
  }
}

/** True for a Refused error (branch on the code). */
export function isRefused(err: unknown): err is Refused {
  return err instanceof AgentError && err.code === 'E_RESTORE_REFUSED';
}

/** `/proc/self/fd/<fd>/` for each fd number (the text only depends on the number). */
const prefixes = new Map<number, Buffer>();

/** `/proc/self/fd/<fd>/<name>` as bytes: `name` need not be UTF-8. */
export function at(dirFd: number, name: Buffer): Buffer {
  let prefix = prefixes.get(dirFd);
  if (!prefix) {
    prefix = Buffer.from(`/proc/self/fd/${dirFd}/`);
    if (prefixes.size < 4096) prefixes.set(dirFd, prefix);
  }
  return Buffer.concat([prefix, name], prefix.length + name.length);
}

/** A name for messages: bytes decoded, control characters (C0, C1) escaped. */
export function show(name: Buffer | string): string {
  const s = typeof name === 'string' ? name : name.toString('utf8');

  return s.replace(/[\u0000-\u001f\u007f-\u009f\\]/g, (c) => (c === '\\' ? '\\\\' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
}

/** Display path of `name` inside a directory shown as `where` ('' is TARGET itself, '/' the root). */
export function inside(where: string, name: Buffer | string): string {
  const n = show(name);
  if (where === '') return n;
  return where.endsWith('/') ? where + n : `${where}/${n}`;
}

/** Who besides root can change this directory's entries, or undefined if nobody. */
function changer(st: Stats): string | undefined {
  if (st.uid !== 0) return `uid ${st.uid}`;
  if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) return `its group or others (mode ${(st.mode & 0o7777).toString(8)})`;
  return undefined;
}

/** Why the symlink `st` in directory `dirFd` must not be followed, or undefined if it may. */
export function untrustedLink(dirFd: number, st: Stats, links: LinkBudget): string | undefined {
  if (st.uid !== 0) return `owned by uid ${st.uid}`;
  if (links.created?.has(inodeKey(st))) return 'that this restore made from the archive (never followed: GNU tar refuses those too)';
  const who = changer(fstatSync(dirFd));
  return who ? `owned by root in a directory that ${who} can change` : undefined;
}

export function errCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
}

/** Counts links followed within one lookup, and knows the links this restore made. */
export interface LinkBudget {
  n: number;
  /** inodes (`dev:ino`) of root-owned links this restore created: a stream must not write through its own links */
  created?: Set<string>;
}

export function inodeKey(st: Stats): string {
  return `${st.dev}:${st.ino}`;
}

/**
 * Opens directory `name` inside `dirFd` without following a link a user
 * planted. With `create`, a missing directory is made (mode 0755 less the
 * umask, as GNU tar makes a member's missing parents). Returns a new fd.
 */
export function openDir(dirFd: number, name: Buffer, where: string, create: boolean, links: LinkBudget): number {
  const path = at(dirFd, name);
  for (let i = 0; i < RETRIES; i++) {
    try {
      return openSync(path, DIR_FLAGS);
    } catch (err) {
      const code = errCode(err);
      if (code === 'ENOENT' && create) {
        try {
          mkdirSync(path, 0o755);
        } catch (e) {
          if (errCode(e) !== 'EEXIST') throw e;
        }
        continue;
      }
      if (code === 'ENOENT') throw new Refused(`${inside(where, name)} does not exist`);
      if (code !== 'ENOTDIR' && code !== 'ELOOP') throw err;
      let st: Stats;
      try {
        st = lstatSync(path);
      } catch (e) {
        if (errCode(e) === 'ENOENT') continue;
        throw e;
      }
      if (!st.isSymbolicLink()) throw new Refused(`${inside(where, name)} is not a directory`);
      const why = untrustedLink(dirFd, st, links);
      if (why) throw new Refused(`${inside(where, name)} is a symlink ${why}`);
      // Root's link in a directory only root can change: its text is stable.
      const text = readlinkSync(path, { encoding: 'buffer' });
      return followLink(dirFd, where, text, `${inside(where, name)} -> ${show(text)}`, links);
    }
  }
  throw new Refused(`${inside(where, name)} kept changing while it was being opened`);
}

/** Splits a path into components, dropping empty ones and '.'. */
export function components(p: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= p.length; i++) {
    if (i === p.length || p[i] === 0x2f) {
      if (i > start && !(i - start === 1 && p[start] === 0x2e)) out.push(p.subarray(start, i));
      start = i + 1;
    }
  }
  return out;
}

/** Walks a root-owned link's text from the directory holding it (or from '/'), creating nothing. */
function followLink(dirFd: number, where: string, text: Buffer, label: string, links: LinkBudget): number {
  if (++links.n > MAX_LINKS) throw new Refused(`${label}: too many levels of symbolic links`);
  const absolute = text[0] === 0x2f;
  const start = absolute ? openSync('/', DIR_FLAGS) : openSync(`/proc/self/fd/${dirFd}`, O_RDONLY | O_DIRECTORY);
  try {
    return walk(start, components(text), absolute ? '/' : where, false, links);
  } catch (err) {
    if (isRefused(err) && !err.message.startsWith(label)) throw new Refused(`${label}: ${err.message}`);
    throw err;
  } finally {
    closeSync(start);
  }
}

/**
 * Walks `comps` from `fromFd` (which stays open) and returns a new fd of the
 * last directory. Intermediate fds are closed as it goes.
 */
export function walk(fromFd: number, comps: Buffer[], where: string, create: boolean, links: LinkBudget): number {
  let fd = fromFd;
  let w = where;
  try {
    for (const c of comps) {
      const next = openDir(fd, c, w, create, links);
      if (fd !== fromFd) closeSync(fd);
      fd = next;
      w = inside(w, c);
    }
  } catch (err) {
    if (fd !== fromFd) closeSync(fd);
    throw err;
  }
  return fd === fromFd ? openSync(`/proc/self/fd/${fromFd}`, O_RDONLY | O_DIRECTORY) : fd;
}

/**
 * Opens a restore TARGET: an absolute path walked from '/' by the same rules
 * (root's links followed, anyone else's refused), created if missing.
 */
export function openTarget(target: string): number {
  const root = openSync('/', DIR_FLAGS);
  try {
    return walk(root, components(Buffer.from(target)), '/', true, { n: 0 });
  } finally {
    closeSync(root);
  }
}
