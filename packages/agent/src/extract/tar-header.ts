/**
 * Parsing of one 512-byte tar header and of pax extended records: the
 * formats Python's tarfile writes for `borg export-tar` (GNU by default, pax
 * with `--tar-format PAX`), and POSIX ustar. Input is untrusted: every field
 * is checked and bounded, names stay raw bytes (a file name need not be UTF-8).
 */
import { AgentError } from '../errors.js';

export const BLOCK = 512;

/** Bounds on what one member may declare. */
export const TAR_LIMITS = {
  /** a long name/link entry ('L'/'K'): far above PATH_MAX, far below memory trouble */
  longName: 64 * 1024,
  /** one pax header ('x'/'g') */
  pax: 1024 * 1024,
  /** a member's size: 2^53, what a JS number holds exactly */
  size: Number.MAX_SAFE_INTEGER,
} as const;

export type MemberType =
  'file' | 'hardlink' | 'symlink' | 'chardev' | 'blockdev' | 'dir' | 'fifo' | 'longname' | 'longlink' | 'pax' | 'paxglobal' | 'other';

export interface RawHeader {
  name: Buffer;
  linkname: Buffer;
  /** the type flag byte as a one-character string ('0', '5', 'L', ...) */
  flag: string;
  type: MemberType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  uname: Buffer;
  gname: Buffer;
  devmajor: number;
  devminor: number;
}

/** The stream is not a well-formed tar archive: the restore stops there. */
export class TarFormatError extends AgentError {
  override name = 'TarFormatError';

  constructor(message: string) {
    super('E_RESTORE_TAR_FORMAT', message);
  }
}

function typeOf(flag: number): MemberType {
  switch (flag) {
    case 0x30: // '0'
    case 0x00:
    case 0x37: // '7' contiguous file: a plain file everywhere
      return 'file';
    case 0x31:
      return 'hardlink';
    case 0x32:
      return 'symlink';
    case 0x33:
      return 'chardev';
    case 0x34:
      return 'blockdev';
    case 0x35:
      return 'dir';
    case 0x36:
      return 'fifo';
    case 0x4c: // 'L'
      return 'longname';
    case 0x4b: // 'K'
      return 'longlink';
    case 0x78: // 'x'
      return 'pax';
    case 0x67: // 'g'
      return 'paxglobal';
    default:
      return 'other';
  }
}

/** A NUL-terminated byte field, copied. */
function bytesField(b: Buffer, off: number, len: number): Buffer {
  const f = b.subarray(off, off + len);
  const nul = f.indexOf(0);
  return Buffer.from(nul === -1 ? f : f.subarray(0, nul));
}

/**
 * A numeric field: octal text (spaces/NULs around it), or GNU base-256 when
 * the high bit of the first byte is set. Negative or unsafe values are refused.
 */
function numField(b: Buffer, off: number, len: number, what: string): number {
  const first = b[off]!;
  if (first & 0x80) {
    if (first === 0xff) throw new TarFormatError(`negative ${what} in a tar header`);
    let v = first & 0x7f;
    for (let i = off + 1; i < off + len; i++) {
      v = v * 256 + b[i]!;
      if (v > Number.MAX_SAFE_INTEGER) throw new TarFormatError(`${what} too large in a tar header`);
    }
    return v;
  }
  let i = off;
  const end = off + len;
  while (i < end && (b[i] === 0x20 || b[i] === 0)) i++;
  let v = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = b[i]!;
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) throw new TarFormatError(`bad ${what} in a tar header`);
    v = v * 8 + (c - 0x30);
    digits++;
  }
  for (; i < end; i++) if (b[i] !== 0x20 && b[i] !== 0) throw new TarFormatError(`bad ${what} in a tar header`);
  if (digits === 0 && what === 'checksum') throw new TarFormatError('empty checksum in a tar header');
  return v;
}

export function isZeroBlock(b: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

/** Parses one header block, verifying its checksum (unsigned, or signed as some old tars wrote it). */
export function parseHeader(b: Buffer): RawHeader {
  const stored = numField(b, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : b[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  if (stored !== unsigned && stored !== signed)
    throw new TarFormatError('tar header checksum mismatch (the stream is not a tar archive or is corrupt)');
  const flag = b[156]!;
  let name = bytesField(b, 0, 100);
  // POSIX ustar ("ustar\0") keeps a name prefix at 345; GNU ("ustar  \0") uses that space for other fields.
  const magic = b.subarray(257, 263).toString('latin1');
  if (magic === 'ustar\0') {
    const prefix = bytesField(b, 345, 155);
    if (prefix.length > 0) name = Buffer.concat([prefix, Buffer.from('/'), name]);
  }
  const size = numField(b, 124, 12, 'size');
  return {
    name,
    linkname: bytesField(b, 157, 100),
    flag: String.fromCharCode(flag),
    type: typeOf(flag),
    mode: numField(b, 100, 8, 'mode') & 0o7777,
    uid: numField(b, 108, 8, 'uid'),
    gid: numField(b, 116, 8, 'gid'),
    size,
    mtime: numField(b, 136, 12, 'mtime'),
    uname: bytesField(b, 265, 32),
    gname: bytesField(b, 297, 32),
    devmajor: numField(b, 329, 8, 'devmajor'),
    devminor: numField(b, 337, 8, 'devminor'),
  };
}

/** The pax keys a restore uses; values stay bytes (hdrcharset=BINARY names are not UTF-8). */
export interface PaxValues {
  path?: Buffer;
  linkpath?: Buffer;
  size?: number;
  uid?: number;
  gid?: number;
  uname?: Buffer;
  gname?: Buffer;
  mtime?: number;
}

function paxNumber(v: Buffer, key: string, fraction: boolean): number {
  const s = v.toString('latin1');
  const re = fraction ? /^-?\d{1,20}(\.\d{1,20})?$/ : /^\d{1,20}$/;
  if (!re.test(s)) throw new TarFormatError(`bad pax ${key} value`);
  const n = Number(s);
  if (!Number.isFinite(n) || Math.abs(n) > Number.MAX_SAFE_INTEGER) throw new TarFormatError(`pax ${key} value out of range`);
  return n;
}

/** Parses pax records ("LEN key=value\n"), merging the known keys into `into`. */
export function parsePax(data: Buffer, into: PaxValues): void {
  let off = 0;
  while (off < data.length) {
    if (data[off] === 0) break; // NUL padding after the last record
    const sp = data.indexOf(0x20, off);
    if (sp === -1 || sp - off > 20) throw new TarFormatError('bad pax record length');
    const lenText = data.subarray(off, sp).toString('latin1');
    if (!/^\d+$/.test(lenText)) throw new TarFormatError('bad pax record length');
    const len = Number(lenText);
    const end = off + len;
    if (len <= sp - off + 1 || end > data.length || data[end - 1] !== 0x0a) throw new TarFormatError('bad pax record');
    const rec = data.subarray(sp + 1, end - 1);
    const eq = rec.indexOf(0x3d);
    if (eq === -1) throw new TarFormatError('bad pax record');
    const key = rec.subarray(0, eq).toString('latin1');
    const value = Buffer.from(rec.subarray(eq + 1));
    switch (key) {
      case 'path':
        into.path = value;
        break;
      case 'linkpath':
        into.linkpath = value;
        break;
      case 'size':
        into.size = paxNumber(value, key, false);
        break;
      case 'uid':
        into.uid = paxNumber(value, key, false);
        break;
      case 'gid':
        into.gid = paxNumber(value, key, false);
        break;
      case 'uname':
        into.uname = value;
        break;
      case 'gname':
        into.gname = value;
        break;
      case 'mtime':
        into.mtime = paxNumber(value, key, true);
        break;
      default:
      // atime, ctime, charset, comments, GNU.* and vendor keys: not restored.
    }
    off = end;
  }
}
