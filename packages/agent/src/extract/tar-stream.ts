/**
 * An incremental tar reader: bytes go in as they arrive, in chunks of any
 * size; members come out one at a time to a sink, file contents as slices of
 * the input (no copy). Long names ('L'/'K') and pax headers ('x'/'g') are
 * folded into the member they describe. Memory is bounded by TAR_LIMITS.
 */
import {
  BLOCK,
  TAR_LIMITS,
  TarFormatError,
  isZeroBlock,
  parseHeader,
  parsePax,
  type MemberType,
  type PaxValues,
  type RawHeader,
} from './tar-header.js';

export interface Member {
  name: Buffer;
  linkname: Buffer;
  type: MemberType;
  /** the raw type flag, for messages about unsupported types */
  flag: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** seconds since the epoch, possibly fractional (pax) */
  mtime: number;
  uname: Buffer;
  gname: Buffer;
  devmajor: number;
  devminor: number;
}

export interface MemberSink {
  /** A member starts. For a 'file', `size` bytes follow through data(), then end(). */
  begin(m: Member): void;
  data(chunk: Buffer): void;
  end(): void;
}

type State = 'header' | 'data' | 'meta' | 'skip' | 'sparse-ext' | 'end';

export class TarStream {
  private state: State = 'header';
  private readonly block = Buffer.alloc(BLOCK);
  private blockFill = 0;
  /** payload bytes left in the current entry, then padding to the block */
  private left = 0;
  private pad = 0;
  private meta: Buffer[] = [];
  private metaKind: MemberType = 'other';
  private longName: Buffer | undefined;
  private longLink: Buffer | undefined;
  private pax: PaxValues = {};
  private readonly global: PaxValues = {};
  private afterSparse: Member | undefined;
  /** members seen (any type but long-name and pax entries) */
  members = 0;

  constructor(private readonly sink: MemberSink) {}

  /** True once the end-of-archive block was read: anything after it is ignored. */
  get ended(): boolean {
    return this.state === 'end';
  }

  /** Feeds bytes. Throws TarFormatError on a malformed stream; the caller stops there. */
  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length && this.state !== 'end') {
      if (this.left === 0 && this.pad > 0) {
        const n = Math.min(this.pad, chunk.length - off);
        this.pad -= n;
        off += n;
        continue;
      }
      switch (this.state) {
        case 'header':
        case 'sparse-ext': {
          let blk: Buffer;
          if (this.blockFill === 0 && chunk.length - off >= BLOCK) {
            blk = chunk.subarray(off, off + BLOCK);
            off += BLOCK;
          } else {
            const n = Math.min(BLOCK - this.blockFill, chunk.length - off);
            chunk.copy(this.block, this.blockFill, off, off + n);
            this.blockFill += n;
            off += n;
            if (this.blockFill < BLOCK) return;
            this.blockFill = 0;
            blk = this.block;
          }
          if (this.state === 'sparse-ext') this.sparseExtension(blk);
          else this.header(blk);
          break;
        }
        case 'data': {
          const n = Math.min(this.left, chunk.length - off);
          this.sink.data(chunk.subarray(off, off + n));
          this.left -= n;
          off += n;
          if (this.left === 0) this.finishEntry();
          break;
        }
        case 'meta': {
          const n = Math.min(this.left, chunk.length - off);
          this.meta.push(Buffer.from(chunk.subarray(off, off + n)));
          this.left -= n;
          off += n;
          if (this.left === 0) this.finishMeta();
          break;
        }
        case 'skip': {
          const n = Math.min(this.left, chunk.length - off);
          this.left -= n;
          off += n;
          if (this.left === 0) this.finishEntry();
          break;
        }
      }
    }
  }

  /** End of input: throws if it stopped inside a member. */
  finish(): void {
    if (this.state === 'end') return;
    if (
      this.state === 'header' &&
      this.blockFill === 0 &&
      this.left === 0 &&
      this.pad === 0 &&
      this.members === 0 &&
      !this.longName &&
      !this.longLink
    ) {
      throw new TarFormatError('the stream is empty: no tar archive arrived');
    }
    // GNU tar accepts an archive without its end-of-archive blocks; so do we, between members.
    if (this.state === 'header' && this.blockFill === 0 && this.left === 0 && this.pad === 0) return;
    throw new TarFormatError('the tar stream ended in the middle of a member (truncated)');
  }

  private expectData(size: number, pad: boolean): void {
    this.left = size;
    this.pad = pad ? (BLOCK - (size % BLOCK)) % BLOCK : 0;
  }

  private header(blk: Buffer): void {
    if (isZeroBlock(blk)) {
      this.state = 'end';
      return;
    }
    const h = parseHeader(blk);
    switch (h.type) {
      case 'longname':
      case 'longlink':
      case 'pax':
      case 'paxglobal': {
        const limit = h.type === 'pax' || h.type === 'paxglobal' ? TAR_LIMITS.pax : TAR_LIMITS.longName;
        if (h.size > limit) throw new TarFormatError(`a tar ${h.type} entry of ${h.size} bytes is larger than the limit of ${limit}`);
        this.metaKind = h.type;
        this.meta = [];
        this.expectData(h.size, true);
        this.state = 'meta';
        if (h.size === 0) this.finishMeta();
        return;
      }
      default:
        this.member(h, blk);
    }
  }

  private member(h: RawHeader, blk: Buffer): void {
    const p = { ...this.global, ...this.pax };
    const m: Member = {
      name: p.path ?? this.longName ?? h.name,
      linkname: p.linkpath ?? this.longLink ?? h.linkname,
      type: h.type,
      flag: h.flag,
      mode: h.mode,
      uid: p.uid ?? h.uid,
      gid: p.gid ?? h.gid,
      size: p.size ?? h.size,
      mtime: p.mtime ?? h.mtime,
      uname: p.uname ?? h.uname,
      gname: p.gname ?? h.gname,
      devmajor: h.devmajor,
      devminor: h.devminor,
    };
    this.longName = undefined;
    this.longLink = undefined;
    this.pax = {};
    this.members++;
    if (m.size > TAR_LIMITS.size) throw new TarFormatError('member size out of range');
    // Data follows regular files and types we do not know (as Python's tarfile,
    // the writer, lays it out); links, dirs, devices and fifos carry none.
    if (m.type === 'file') {
      this.sink.begin(m);
      this.expectData(m.size, true);
      this.state = 'data';
      if (m.size === 0) this.finishEntry();
      return;
    }
    this.sink.begin(m);
    if (m.type !== 'other') {
      this.sink.end();
      return;
    }
    // GNU sparse: extension headers may sit between the header and the data.
    if (h.flag === 'S' && blk[482] !== 0) {
      this.afterSparse = m;
      this.state = 'sparse-ext';
      return;
    }
    this.expectData(m.size, true);
    this.state = 'skip';
    if (m.size === 0) this.finishEntry();
  }

  private sparseExtension(blk: Buffer): void {
    if (blk[504] !== 0) return; // another extension block follows
    const m = this.afterSparse!;
    this.afterSparse = undefined;
    this.expectData(m.size, true);
    this.state = 'skip';
    if (m.size === 0) this.finishEntry();
  }

  private finishEntry(): void {
    if (this.state === 'data' || this.state === 'skip') this.sink.end();
    this.state = 'header';
  }

  private finishMeta(): void {
    const data = Buffer.concat(this.meta);
    this.meta = [];
    this.state = 'header';
    switch (this.metaKind) {
      case 'longname':
      case 'longlink': {
        const nul = data.indexOf(0);
        const name = nul === -1 ? data : data.subarray(0, nul);
        if (this.metaKind === 'longname') this.longName = name;
        else this.longLink = name;
        return;
      }
      case 'pax':
        parsePax(data, this.pax);
        return;
      case 'paxglobal':
        parsePax(data, this.global);
        return;
      default:
    }
  }
}
