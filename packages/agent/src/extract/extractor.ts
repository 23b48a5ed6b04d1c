/**
 * The restore's tar extractor: a MemberSink that writes each member under an
 * open TARGET directory fd, synchronously, one member at a time.
 *
 * The directories of the current member's path stay open on a stack (tar
 * streams are depth-first), so a file in the same directory as the last one
 * costs no lookup; a directory's mtime is set when the stream leaves it (as
 * GNU tar's delayed set-stat does), its owner and mode at once. Members that
 * cannot be written safely are refused with a message, and the rest of the
 * stream is still restored.
 */
import { closeSync, fchmodSync, fchownSync, futimesSync, writeSync } from 'node:fs';
import { createFile, createHardlink, createNode, createSymlink, makeDir } from './entries.js';
import type { OwnerMap } from './owners.js';
import { Refused, components, errCode, inodeKey, inside, isRefused, show, walk, type LinkBudget } from './safe-dir.js';
import type { Member, MemberSink } from './tar-stream.js';

/** Messages kept for the result: the first ones, each bounded. */
const MAX_MESSAGES = 50;
const MAX_MESSAGE_CHARS = 600;

interface Dir {
  name: Buffer;
  fd: number;
  where: string;
  /** the directory member's mtime, set when the stream leaves the directory */
  mtime?: number;
  /** reached through a kept root-owned link (bin -> usr/bin): its attributes are not the member's */
  viaLink?: boolean;
}

interface OpenFile {
  fd: number;
  member: Member;
}

const DOTDOT = Buffer.from('..');
/** Path components per member: each open directory on the stack is an fd (PATH_MAX allows 2048). */
const MAX_DEPTH = 2048;

export class Extractor implements MemberSink {
  /** the directories of the current path, below TARGET */
  private readonly stack: Dir[] = [];
  private readonly root: Dir;
  private file: OpenFile | undefined;
  /** root-owned links this restore made: never followed by later members */
  private readonly created = new Set<string>();
  written = 0;
  notWritten = 0;
  readonly messages: string[] = [];

  constructor(
    targetFd: number,
    private readonly owners: OwnerMap,
  ) {
    this.root = { name: Buffer.alloc(0), fd: targetFd, where: '' };
  }

  begin(m: Member): void {
    try {
      this.member(m);
    } catch (err) {
      this.refuse(m.name, err);
    }
  }

  data(chunk: Buffer): void {
    const f = this.file;
    if (!f) return;
    try {
      let off = 0;
      while (off < chunk.length) off += writeSync(f.fd, chunk, off, chunk.length - off);
    } catch (err) {
      this.file = undefined;
      closeSync(f.fd);
      this.refuse(f.member.name, err);
    }
  }

  end(): void {
    const f = this.file;
    if (!f) return;
    this.file = undefined;
    try {
      const { uid, gid } = this.owners.of(f.member);
      // chown first: it clears setuid/setgid bits, the mode puts them back.
      fchownSync(f.fd, uid, gid);
      fchmodSync(f.fd, f.member.mode);
      futimesSync(f.fd, f.member.mtime, f.member.mtime);
      this.written++;
    } catch (err) {
      this.refuse(f.member.name, err);
    } finally {
      closeSync(f.fd);
    }
  }

  /** End of the stream (or an abort): pending directory times are set, every fd closed (TARGET's too: the extractor owns it). */
  close(): void {
    if (this.file) {
      closeSync(this.file.fd);
      this.file = undefined;
    }
    this.popTo(0);
    this.leave(this.root, true);
  }

  /** "N members not written" and the first messages, for the result. */
  note(line: string): void {
    this.notWritten++;
    if (this.messages.length < MAX_MESSAGES) this.messages.push(line.slice(0, MAX_MESSAGE_CHARS));
  }

  private refuse(name: Buffer, err: unknown): void {
    let why: string;
    if (isRefused(err)) why = err.message;
    else {
      const code = errCode(err);
      why = code
        ? `${code}${err instanceof Error && 'syscall' in err ? ` (${String(err.syscall)})` : ''}`
        : err instanceof Error
          ? err.message
          : String(err);
    }
    const shown = show(name);
    // A long name is cut so that the reason still fits in the message.
    this.note(`${shown.length > 300 ? `${shown.slice(0, 300)}...` : shown}: not written: ${why}`);
  }

  private links(): LinkBudget {
    return { n: 0, created: this.created };
  }

  private member(m: Member): void {
    const comps = components(m.name);
    if (comps.some((c) => c.equals(DOTDOT))) throw new Refused("the name contains '..'");
    if (comps.length > MAX_DEPTH) throw new Refused(`more than ${MAX_DEPTH} path components`);
    if (m.type === 'other') throw new Refused(`unsupported tar member type '${show(m.flag)}', skipped`);
    if (comps.length === 0) {
      if (m.type !== 'dir') throw new Refused('empty name');
      this.popTo(0);
      this.setDir(this.root, m);
      this.written++;
      return;
    }
    if (m.type === 'dir') {
      const k = this.common(comps);
      if (k === comps.length) {
        this.popTo(k);
        this.setDir(this.top(), m);
        this.written++;
        return;
      }
    }
    const parent = this.enter(comps.slice(0, -1));
    const name = comps[comps.length - 1]!;
    const { uid, gid } = this.owners.of(m);
    switch (m.type) {
      case 'dir': {
        const { fd, viaLink } = makeDir(parent.fd, name, parent.where, this.links());
        const dir: Dir = { name: Buffer.from(name), fd, where: inside(parent.where, name), viaLink };
        this.stack.push(dir);
        this.setDir(dir, m);
        this.written++;
        return;
      }
      case 'file':
        this.file = { fd: createFile(parent.fd, name, parent.where), member: m };
        return;
      case 'symlink': {
        const st = createSymlink(parent.fd, name, parent.where, m.linkname, uid, gid, m.mtime);
        if (uid === 0) this.created.add(inodeKey(st)); // only root's links could be followed
        this.written++;
        return;
      }
      case 'hardlink': {
        const src = components(m.linkname);
        if (src.length === 0 || src.some((c) => c.equals(DOTDOT)))
          throw new Refused(`the hard link's source '${show(m.linkname)}' is empty or contains '..'`);
        const srcDir = walk(this.root.fd, src.slice(0, -1), '', false, this.links());
        try {
          createHardlink(srcDir, src[src.length - 1]!, parent.fd, name, parent.where, uid);
        } finally {
          closeSync(srcDir);
        }
        this.written++;
        return;
      }
      case 'fifo':
      case 'chardev':
      case 'blockdev':
        createNode(parent.fd, name, parent.where, m.type, m.devmajor, m.devminor, uid, gid, m.mode, m.mtime);
        this.written++;
        return;
      default:
        throw new Refused(`unsupported tar member type '${show(m.flag)}', skipped`);
    }
  }

  private top(): Dir {
    return this.stack[this.stack.length - 1] ?? this.root;
  }

  /** How many leading components of `comps` the open stack already holds. */
  private common(comps: Buffer[]): number {
    let k = 0;
    while (k < this.stack.length && k < comps.length && this.stack[k]!.name.equals(comps[k]!)) k++;
    return k;
  }

  /** Opens (creating as needed) the directories `comps` below TARGET; returns the last one. */
  private enter(comps: Buffer[]): Dir {
    const k = this.common(comps);
    this.popTo(k);
    for (let i = k; i < comps.length; i++) {
      const parent = this.top();
      const c = comps[i]!;
      const links = this.links();
      const fd = walk(parent.fd, [c], parent.where, true, links);
      this.stack.push({ name: Buffer.from(c), fd, where: inside(parent.where, c), viaLink: links.n > 0 });
    }
    return this.top();
  }

  private setDir(dir: Dir, m: Member): void {
    // A kept root link (bin -> usr/bin) keeps its directory's own attributes, as
    // --keep-directory-symlink did.
    if (dir.viaLink) return;
    const { uid, gid } = this.owners.of(m);
    fchownSync(dir.fd, uid, gid);
    fchmodSync(dir.fd, m.mode);
    dir.mtime = m.mtime;
  }

  private popTo(depth: number): void {
    while (this.stack.length > depth) this.leave(this.stack.pop()!, true);
  }

  private leave(dir: Dir, close: boolean): void {
    try {
      if (dir.mtime !== undefined) futimesSync(dir.fd, dir.mtime, dir.mtime);
    } catch (err) {
      this.refuse(Buffer.from(dir.where), err);
    } finally {
      if (close) closeSync(dir.fd);
    }
  }
}
