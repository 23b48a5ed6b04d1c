/**
 * The client's own record of every restore order it received, kept whatever
 * the controller says about it: JSON lines in the agent's state dir, root-only,
 * bounded by rotation. Every string that came from the controller is stored
 * with control characters escaped, so printing the record is safe.
 */
import { errnoCode } from '@borgpull/protocol';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readFile, rename, stat } from 'node:fs/promises';

export type RestoreResult = 'started' | 'refused' | 'ok' | 'failed' | 'aborted';

/** One line of the record: the order as it stood at that moment (the last line per order wins). */
export interface RestoreRecord {
  /** This agent's id for the order (begin and outcome lines share it). */
  readonly order: string;
  /** When the order was received (ms since the epoch). */
  readonly time: number;
  readonly stream: number;
  readonly target: string;
  readonly archive?: string;
  /** The first paths the controller named (escaped, bounded); pathCount says how many it sent. */
  readonly paths?: readonly string[];
  readonly pathCount?: number;
  readonly result: RestoreResult;
  readonly refused: boolean;
  /** Why it was refused, failed or aborted (escaped, bounded). */
  readonly reason?: string;
  readonly bytes: number;
  readonly files?: number;
  readonly endedAt?: number;
}

/** Records per file before it is rotated to `.1`: the record keeps the last 1,000 to 2,000 lines. */
export const MAX_RECORDS = 1000;
const MAX_LINE = 16 * 1024;
const MAX_TARGET = 1024;
const MAX_NAME = 256;
const MAX_REASON = 512;
const MAX_PATHS = 16;
const MAX_PATH = 256;

/** C0, DEL and C1 shown as `\xNN`: a controller's `\e]0;...\a` is text in the record, never a sequence. */
export function escapeControls(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Escaped, then cut to `max` characters. */
export function clip(s: string, max: number): string {
  const e = escapeControls(s);
  return e.length > max ? `${e.slice(0, max - 1)}…` : e;
}

export function newOrderId(): string {
  return randomBytes(6).toString('hex');
}

/** Builds the first line of an order from what the controller sent, every string escaped and bounded. */
export function orderRecord(o: {
  stream: number;
  target: string;
  archive?: string | undefined;
  paths?: readonly string[] | undefined;
  result: RestoreResult;
  reason?: string | undefined;
}): RestoreRecord {
  return {
    order: newOrderId(),
    time: Date.now(),
    stream: o.stream,
    target: clip(o.target, MAX_TARGET),
    ...(o.archive !== undefined ? { archive: clip(o.archive, MAX_NAME) } : {}),
    ...(o.paths !== undefined ? { paths: o.paths.slice(0, MAX_PATHS).map((x) => clip(x, MAX_PATH)), pathCount: o.paths.length } : {}),
    result: o.result,
    refused: o.result === 'refused',
    ...(o.reason !== undefined ? { reason: clip(o.reason, MAX_REASON) } : {}),
    bytes: 0,
  };
}

/** The outcome of an order: the same record with its result. */
export function outcome(r: RestoreRecord, o: { result: RestoreResult; bytes: number; files?: number; reason?: string }): RestoreRecord {
  const { reason: _old, ...rest } = r;
  return {
    ...rest,
    result: o.result,
    bytes: o.bytes,
    ...(o.files !== undefined ? { files: o.files } : {}),
    ...(o.reason !== undefined ? { reason: clip(o.reason, MAX_REASON) } : {}),
    endedAt: Date.now(),
  };
}

/** Append-only, rotated JSON lines. One writer (the running agent); readers may run beside it. */
export class RestoreLog {
  private lines: number | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly maxRecords = MAX_RECORDS,
  ) {}

  /** Appends one record; appends are serialized, and the file rotates to `.1` at maxRecords lines. */
  append(rec: RestoreRecord): Promise<void> {
    const next = this.writing.then(() => this.write(rec));
    this.writing = next.catch(() => undefined);
    return next;
  }

  private async write(rec: RestoreRecord): Promise<void> {
    let line = JSON.stringify(rec);
    if (line.length > MAX_LINE) line = JSON.stringify({ ...rec, paths: [], reason: clip(rec.reason ?? '', 64) });
    if (this.lines === undefined) this.lines = await countLines(this.path);
    if (this.lines >= this.maxRecords) {
      await rename(this.path, `${this.path}.1`);
      this.lines = 0;
    }
    // O_NOFOLLOW: the record is never written through a link; 0600 whatever the umask.
    const fh = await open(this.path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    try {
      await fh.chmod(0o600);
      await fh.write(`${line}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    this.lines++;
  }

  /** The last `n` orders, newest first, each as its last recorded state. Unreadable lines are skipped. */
  async recent(n: number): Promise<RestoreRecord[]> {
    const byOrder = new Map<string, RestoreRecord>();
    for (const file of [`${this.path}.1`, this.path]) {
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch {
        continue;
      }
      for (const l of text.split('\n')) {
        const r = parseRecord(l);
        if (!r) continue;
        byOrder.delete(r.order); // re-insert: Map order follows the latest line
        byOrder.set(r.order, r);
      }
    }
    return [...byOrder.values()].sort((a, b) => b.time - a.time).slice(0, n);
  }
}

async function countLines(path: string): Promise<number> {
  try {
    // A file that grew past what maxRecords lines can hold is rotated at once.
    if ((await stat(path)).size > MAX_RECORDS * MAX_LINE) return Number.MAX_SAFE_INTEGER;
    const text = await readFile(path, 'utf8');
    let n = 0;
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
    return n;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return 0;
    throw err;
  }
}

const RESULTS: readonly string[] = ['started', 'refused', 'ok', 'failed', 'aborted'];

/** A line of the record, read back: parsed, checked and copied (the file is ours, but it is read as data). */
export function parseRecord(line: string): RestoreRecord | undefined {
  if (!line || line.length > MAX_LINE * 2) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const r = v as Record<string, unknown>;
  const num = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x >= 0;
  if (typeof r['order'] !== 'string' || !num(r['time']) || !num(r['stream']) || typeof r['target'] !== 'string') return undefined;
  if (typeof r['result'] !== 'string' || !RESULTS.includes(r['result']) || !num(r['bytes'])) return undefined;
  const paths = Array.isArray(r['paths'])
    ? r['paths'].filter((x): x is string => typeof x === 'string').map((x) => clip(x, MAX_PATH))
    : undefined;
  return {
    order: clip(r['order'], 32),
    time: r['time'],
    stream: r['stream'],
    target: clip(r['target'], MAX_TARGET),
    ...(typeof r['archive'] === 'string' ? { archive: clip(r['archive'], MAX_NAME) } : {}),
    ...(paths ? { paths } : {}),
    ...(num(r['pathCount']) ? { pathCount: r['pathCount'] } : {}),
    result: r['result'] as RestoreResult,
    refused: r['refused'] === true,
    ...(typeof r['reason'] === 'string' ? { reason: clip(r['reason'], MAX_REASON) } : {}),
    bytes: r['bytes'],
    ...(num(r['files']) ? { files: r['files'] } : {}),
    ...(num(r['endedAt']) ? { endedAt: r['endedAt'] } : {}),
  };
}
