/**
 * The job history file: JSON lines, one record per line, a new line for
 * every change of a job (it starts, it ends); the last line of an id is its
 * record. Appends go through one O_APPEND descriptor and are fdatasync'd
 * before they count, so an append costs the same with 100 or 100,000 records
 * in the file. A crash can leave only the line being written incomplete: it
 * has no newline, and the next open cuts it off (that one record is lost),
 * so the next append starts on a clean line instead of gluing onto garbage.
 */
import { constants } from 'node:fs';
import { open, rename, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errnoCode } from '@borgpull/protocol';
import { MAX_LINE, readJobRecord } from './job-record.js';
import type { JobRecord } from './job-types.js';

const NL = 0x0a;
// Never through a symlink: the history is ours, wherever a link would point.
const { O_APPEND, O_CREAT, O_NOFOLLOW, O_RDWR, O_TRUNC, O_WRONLY } = constants;
const CHUNK = 1 << 20;

export interface LogScan {
  /** The last version of each record, in the order its id first appeared (oldest first). */
  readonly records: JobRecord[];
  /** Complete lines in the file, good or not. */
  readonly lines: number;
  /** Lines that did not parse or validate, skipped. */
  readonly skipped: number;
  /** Bytes after the last newline (a write cut short), cut off the file. */
  readonly tornBytes: number;
  /** The file's size once the torn bytes are cut. */
  readonly size: number;
}

/**
 * Every line we write starts with the record's id (logLine puts it first): read
 * from the raw line, it says which lines a later one replaced, so only the
 * last line of each job is parsed and checked (half the work: every job has
 * two). A line without it is parsed to find its id.
 */
const ID_PREFIX = /^\{"id":"([A-Za-z0-9._:-]{1,128})"/;

/** Reads the log at `path` (undefined if there is none) and cuts off a torn last line. */
export async function scanLog(path: string): Promise<LogScan | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, O_RDWR | O_NOFOLLOW);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    /** The last line of each id, in the order ids first appeared. */
    const lastLine = new Map<string, string>();
    let lines = 0;
    let skipped = 0;
    const line = (text: string): void => {
      lines++;
      if (text.length > MAX_LINE) {
        skipped++;
        return;
      }
      const id = ID_PREFIX.exec(text)?.[1] ?? parseLine(text)?.id;
      if (id === undefined) skipped++;
      else lastLine.set(id, text);
    };
    const buf = Buffer.allocUnsafe(CHUNK);
    // Bytes after the last newline so far: the start of a line the next chunk ends.
    let carry = Buffer.alloc(0);
    // Inside a line longer than any we write: dropped up to its newline.
    let overlong = false;
    let pos = 0;
    let goodEnd = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, pos);
      if (bytesRead === 0) break;
      const start = pos - carry.length;
      let data = carry.length ? Buffer.concat([carry, buf.subarray(0, bytesRead)]) : buf.subarray(0, bytesRead);
      pos += bytesRead;
      let skip = 0;
      if (overlong) {
        const nl = data.indexOf(NL);
        if (nl < 0) {
          carry = Buffer.alloc(0);
          continue;
        }
        lines++;
        skipped++;
        overlong = false;
        skip = nl + 1;
        goodEnd = start + skip;
      }
      const last = data.lastIndexOf(NL);
      if (last >= skip) {
        // Invalid UTF-8 becomes U+FFFD: such a line then fails to parse or validate, like any other damage.
        for (const l of data.toString('utf8', skip, last).split('\n')) line(l);
        goodEnd = start + last + 1;
        data = data.subarray(last + 1);
      } else data = data.subarray(skip);
      if (data.length > MAX_LINE) {
        overlong = true;
        carry = Buffer.alloc(0);
      } else carry = Buffer.from(data);
    }
    const tornBytes = pos - goodEnd;
    if (tornBytes > 0) {
      await fh.truncate(goodEnd);
      await fh.sync();
    }
    const records: JobRecord[] = [];
    for (const [id, text] of lastLine) {
      const rec = parseLine(text);
      // A line with two "id" keys: JSON.parse keeps the second.
      if (rec === undefined || rec.id !== id) skipped++;
      else records.push(rec);
    }
    return { records, lines, skipped, tornBytes, size: goodEnd };
  } finally {
    await fh.close();
  }
}

function parseLine(text: string): JobRecord | undefined {
  try {
    return readJobRecord(JSON.parse(text));
  } catch {
    return undefined;
  }
}

/** One line of the log: the record as JSON, which escapes every newline inside it. */
export function logLine(job: JobRecord): string {
  // `id` first, whatever order the record's fields were set in: scanLog reads it from the raw line.
  const { id, ...rest } = job;
  return JSON.stringify({ id, ...rest }) + '\n';
}

/** Makes a rename or a new file in `dir` durable. */
async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** The appending end of the log: one O_APPEND descriptor, mode 0600. */
export class LogWriter {
  /** Set when an append failed and its partial line could not be cut off: the next append cuts it first. */
  private dirty = false;

  private constructor(
    private readonly fh: FileHandle,
    /** Bytes of complete lines in the file. */
    public size: number,
  ) {}

  static async open(path: string): Promise<LogWriter> {
    const fh = await open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, 0o600);
    try {
      await fh.chmod(0o600);
      const { size } = await fh.stat();
      if (size === 0) await syncDir(dirname(path));
      return new LogWriter(fh, size);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  /** Appends `text` (whole lines) and waits until it is on disk. On failure nothing of it stays in the file, as far as the disk lets us. */
  async append(text: string): Promise<void> {
    if (this.dirty) {
      await this.fh.truncate(this.size);
      this.dirty = false;
    }
    const buf = Buffer.from(text, 'utf8');
    try {
      for (let off = 0; off < buf.length;) off += (await this.fh.write(buf, off)).bytesWritten;
      await this.fh.datasync();
      this.size += buf.length;
    } catch (err) {
      await this.fh.truncate(this.size).catch(() => (this.dirty = true));
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/**
 * Replaces the log at `path` with `lines`, atomically: a new file written and
 * fsync'd beside it, renamed over it, the directory fsync'd. A crash at any
 * point leaves the old file or the new one, whole.
 */
export async function rewriteLog(path: string, lines: Iterable<string>): Promise<number> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0o600);
  let size = 0;
  try {
    await fh.chmod(0o600);
    let batch: string[] = [];
    let batchLen = 0;
    const flush = async (): Promise<void> => {
      const buf = Buffer.from(batch.join(''), 'utf8');
      for (let off = 0; off < buf.length;) off += (await fh.write(buf, off)).bytesWritten;
      size += buf.length;
      batch = [];
      batchLen = 0;
    };
    for (const l of lines) {
      batch.push(l);
      batchLen += l.length;
      if (batchLen >= CHUNK) await flush();
    }
    await flush();
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await syncDir(dirname(path));
  return size;
}
