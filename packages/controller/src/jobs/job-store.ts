import { readFile, rename, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { errnoCode, errorMessage, terminalSafe } from '@borgpull/protocol';
import { ControllerError } from '../errors.js';
import { applyHistoryRule, DEFAULT_HISTORY, type HistoryRule } from './history-rule.js';
import { logLine, LogWriter, rewriteLog, scanLog } from './job-log.js';
import { MAX_REASON, readJobRecord } from './job-record.js';
import type { JobKind, JobQuery, JobRecord } from './job-types.js';

export {
  isGood,
  JOB_KINDS,
  JOB_STATUSES,
  type JobKind,
  type JobQuery,
  type JobRecord,
  type JobStats,
  type JobStatus,
  type JobTrigger,
} from './job-types.js';

/** Records why a job failed; true when the cause is a bug of ours (no code of its own). */
export function markFailed(job: JobRecord, err: unknown): boolean {
  job.status = 'failed';
  const code =
    typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string'
      ? (err as { code: string }).code
      : undefined;
  // A code may be a peer's (an agent's error reply): only the E_ form is kept, so nothing else is printed or branched on.
  job.code = code === undefined ? 'E_JOB_INTERNAL' : /^E_[A-Z0-9_]{1,64}$/.test(code) ? code : 'E_JOB_PEER_CODE';
  // A message may carry a peer's text (an agent's error, tar's stderr): stored
  // and later printed, so nothing in it may act on a terminal.
  job.reason = terminalSafe(err instanceof Error ? err.message : String(err));
  return code === undefined;
}

export function newJobId(): string {
  return `${new Date().toISOString().replace(/[-:]/g, '').slice(0, 15)}-${randomBytes(3).toString('hex')}`;
}

/** Where the store says what it found (pino's Logger fits). */
export interface StoreLog {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface JobStoreOptions {
  /** The history file of versions before the log (one JSON document): imported once, then renamed aside. */
  readonly legacy?: string;
  readonly rule?: HistoryRule;
  readonly log?: StoreLog;
  readonly now?: () => number;
  /** Below this many lines the file is not compacted while running (default 1024; lower in tests). */
  readonly minCompactLines?: number;
}

/** Below this many lines the log is never compacted while running: rewriting a small file often buys nothing. */
const MIN_COMPACT_LINES = 1024;
/** The old single-file history held at most 1000 records; a bigger file is not one of ours. */
const MAX_LEGACY_BYTES = 64 * 2 ** 20;

const NO_LOG: StoreLog = { warn: () => undefined, info: () => undefined };

/**
 * Job history: an append-only log (job-log.ts) and, in memory, every record
 * with indexes by agent and by agent and kind, so the scheduler's "last good
 * backup of this agent" and `controller jobs --agent` do not scan 100,000
 * records. A job records itself: `add` when it starts, `update` when it
 * ends (its owner changes the record in place); each appends one line.
 * Trimmed by the `history` rule when the file is compacted: at open, and
 * when it has doubled since. Listeners added with `onEnd` hear of each record
 * once it is saved with a final status (the scheduler, alerts and metrics).
 */
export class JobStore {
  /** Every record, oldest first (in the order they were added). */
  private all: JobRecord[] = [];
  private readonly ids = new Set<string>();
  private readonly byAgent = new Map<string, JobRecord[]>();
  /** Key: agent NUL kind. */
  private readonly byAgentKind = new Map<string, JobRecord[]>();
  private readonly endListeners: Array<(job: JobRecord) => void> = [];
  /** Appends and compactions, one at a time, in order. */
  private writing: Promise<void> = Promise.resolve();
  /** Lines in the file, and how many it had after the last compaction. */
  private lines = 0;
  private compactedAt = 0;
  private compactQueued = false;
  /** Set when a compaction replaced the file but could not open the new one: the next append opens it. */
  private reopen = false;

  private constructor(
    private readonly path: string,
    private writer: LogWriter,
    private rule: HistoryRule,
    private readonly log: StoreLog,
    private readonly now: () => number,
    private readonly minCompactLines: number,
  ) {}

  /** Opens (or creates) the history at `path`; E_STATE_READ when the file cannot be read or written (never for damage inside it). */
  static async open(path: string, opts: JobStoreOptions = {}): Promise<JobStore> {
    try {
      return await JobStore.openFile(path, opts);
    } catch (err) {
      throw new ControllerError('E_STATE_READ', `cannot open the job history ${path}: ${errorMessage(err)}`, { cause: err });
    }
  }

  private static async openFile(path: string, opts: JobStoreOptions): Promise<JobStore> {
    const log = opts.log ?? NO_LOG;
    const now = opts.now ?? Date.now;
    let scan = await scanLog(path);
    if (opts.legacy !== undefined) await importLegacy(opts.legacy, path, scan !== undefined, log);
    scan ??= await scanLog(path);
    if (scan && scan.tornBytes > 0) log.warn({ path, bytes: scan.tornBytes }, 'job history: cut off a record a crash left half-written');
    if (scan && scan.skipped > 0) log.warn({ path, lines: scan.skipped }, 'job history: skipped damaged lines');
    const store = new JobStore(
      path,
      await LogWriter.open(path),
      opts.rule ?? DEFAULT_HISTORY,
      log,
      now,
      opts.minCompactLines ?? MIN_COMPACT_LINES,
    );
    for (const r of scan?.records ?? []) store.index(r);
    store.lines = scan?.lines ?? 0;
    store.compactedAt = store.lines;
    // At open: to trim by the rule, and to drop damaged and superseded lines once there are many.
    const trim = applyHistoryRule(store.all, store.rule, now()).length < store.all.length;
    if (trim || (scan?.skipped ?? 0) > 0 || store.lines > 2 * store.all.length + store.minCompactLines) await store.compact();
    return store;
  }

  /** A new rule (config reloaded): applied at the next compaction. */
  setRule(rule: HistoryRule): void {
    this.rule = rule;
  }

  /** Jobs that were running when a previous daemon died: they failed. */
  async failInterrupted(): Promise<JobRecord[]> {
    const stale = this.all.filter((j) => j.status === 'running');
    for (const j of stale) {
      j.status = 'failed';
      j.code = 'E_JOB_INTERRUPTED';
      j.reason = 'the controller stopped while this job ran';
      j.endedAt ??= this.now();
    }
    if (stale.length) await this.save(stale);
    return stale;
  }

  async add(job: JobRecord): Promise<void> {
    if (!this.ids.has(job.id)) this.index(job);
    await this.save([job]);
    this.ended(job);
  }

  /** Saves `job`, one of the store's records, changed in place by its owner. */
  async update(job: JobRecord): Promise<void> {
    await this.add(job);
  }

  /** Calls `listener` with every record saved with a final status, after it is saved; returns a remover. */
  onEnd(listener: (job: JobRecord) => void): () => void {
    this.endListeners.push(listener);
    return () => {
      const i = this.endListeners.indexOf(listener);
      if (i >= 0) this.endListeners.splice(i, 1);
    };
  }

  private ended(job: JobRecord): void {
    if (job.status === 'running') return;
    for (const l of [...this.endListeners]) l(job);
  }

  /** The newest records that match `q`, newest first. */
  query(q: JobQuery): JobRecord[] {
    const list =
      q.agent === undefined ? this.all : q.kind === undefined ? this.byAgent.get(q.agent) : this.byAgentKind.get(`${q.agent}\0${q.kind}`);
    const out: JobRecord[] = [];
    if (!list) return out;
    for (let i = list.length - 1; i >= 0 && out.length < q.limit; i--) {
      const j = list[i]!;
      if (q.kind !== undefined && j.kind !== q.kind) continue;
      if (q.status !== undefined && !q.status.includes(j.status)) continue;
      if (q.since !== undefined && j.startedAt < q.since) continue;
      out.push(j);
    }
    return out;
  }

  /** The newest record of `agent`'s jobs of `kind` for which `pred` holds (any, without one). */
  latest(agent: string, kind: JobKind, pred: (job: JobRecord) => boolean = () => true): JobRecord | undefined {
    const list = this.byAgentKind.get(`${agent}\0${kind}`) ?? [];
    for (let i = list.length - 1; i >= 0; i--) {
      const j = list[i]!;
      if (pred(j)) return j;
    }
    return undefined;
  }

  recent(limit: number, agent?: string): JobRecord[] {
    return this.query(agent === undefined ? { limit } : { limit, agent });
  }

  /** Records held (for the bench and tests). */
  get size(): number {
    return this.all.length;
  }

  /** Waits for pending writes, then closes the file. */
  async close(): Promise<void> {
    await this.writing.catch(() => undefined);
    await this.writer.close();
  }

  private index(job: JobRecord): void {
    this.ids.add(job.id);
    this.all.push(job);
    push(this.byAgent, job.agent, job);
    push(this.byAgentKind, `${job.agent}\0${job.kind}`, job);
  }

  private reindex(records: JobRecord[]): void {
    this.all = [];
    this.ids.clear();
    this.byAgent.clear();
    this.byAgentKind.clear();
    for (const r of records) this.index(r);
  }

  /** Appends the current state of `jobs`, then compacts if the file has doubled since the last time. */
  private save(jobs: readonly JobRecord[]): Promise<void> {
    for (const j of jobs) if (j.reason !== undefined && j.reason.length > MAX_REASON) j.reason = `${j.reason.slice(0, MAX_REASON)}…`;
    const text = jobs.map(logLine).join('');
    const appended = this.queue(async () => {
      if (this.reopen) {
        this.writer = await LogWriter.open(this.path);
        this.reopen = false;
      }
      await this.writer.append(text);
      this.lines += jobs.length;
    });
    if (!this.compactQueued && this.lines + jobs.length >= 2 * Math.max(this.compactedAt, this.minCompactLines)) {
      this.compactQueued = true;
      // Not awaited by the caller: its append is saved first; the rewrite follows in the same queue.
      void this.queue(() => this.compact())
        .catch((err: unknown) =>
          this.log.warn({ path: this.path, reason: errorMessage(err) }, 'job history: compaction failed; appending to the old file'),
        )
        .finally(() => (this.compactQueued = false));
    }
    return appended;
  }

  private queue(step: () => Promise<void>): Promise<void> {
    const next = this.writing.catch(() => undefined).then(step);
    this.writing = next;
    return next;
  }

  /** Rewrites the file with the records the rule keeps (and holds only those): atomically, then appends go to the new file. */
  private async compact(): Promise<void> {
    const before = this.all;
    const kept = applyHistoryRule(before, this.rule, this.now());
    // Whatever happens next, the next try waits for the file to double again.
    this.compactedAt = Math.max(this.lines, kept.length);
    await rewriteLog(
      this.path,
      (function* () {
        for (const r of kept) yield logLine(r);
      })(),
    );
    // Jobs added while the file was written are in memory only; their lines are queued behind this step.
    const added = this.all.slice(before.length);
    this.reindex([...kept, ...added]);
    this.lines = kept.length;
    this.compactedAt = kept.length;
    this.log.info({ path: this.path, records: kept.length, dropped: before.length - kept.length }, 'job history compacted');
    const old = this.writer;
    try {
      this.writer = await LogWriter.open(this.path);
    } catch (err) {
      // The old descriptor now points at the replaced file: never append there.
      this.reopen = true;
      throw err;
    } finally {
      await old.close().catch(() => undefined);
    }
  }
}

function push(map: Map<string, JobRecord[]>, key: string, job: JobRecord): void {
  const list = map.get(key);
  if (list) list.push(job);
  else map.set(key, [job]);
}

/**
 * The history file of earlier versions ({"jobs": [...]}, rewritten whole at
 * every change, at most 1000 records): imported into the log once, then
 * renamed to jobs.json.imported. If the log already exists (a crash between
 * the two steps), only the rename is left to do.
 */
async function importLegacy(legacy: string, path: string, logExists: boolean, log: StoreLog): Promise<void> {
  let text: string;
  try {
    const st = await stat(legacy);
    if (!st.isFile() || st.size > MAX_LEGACY_BYTES) throw new Error(`not a file of at most ${MAX_LEGACY_BYTES} bytes`);
    text = await readFile(legacy, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    log.warn({ path: legacy, reason: errorMessage(err) }, 'job history: cannot read the old history file; left as it is');
    return;
  }
  if (!logExists) {
    const records: JobRecord[] = [];
    let skipped = 0;
    try {
      const raw = JSON.parse(text) as unknown;
      const list = typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? (raw as { jobs?: unknown }).jobs : undefined;
      if (!Array.isArray(list)) throw new Error('no "jobs" list');
      const seen = new Set<string>();
      for (const item of list as unknown[]) {
        const r = readJobRecord(item);
        if (r === undefined || seen.has(r.id)) skipped++;
        else {
          seen.add(r.id);
          records.push(r);
        }
      }
    } catch (err) {
      log.warn({ path: legacy, reason: errorMessage(err) }, 'job history: the old history file is damaged; nothing imported');
    }
    await rewriteLog(path, records.map(logLine));
    log.info({ from: legacy, to: path, records: records.length, skipped }, 'job history: imported the old history file');
  }
  await rename(legacy, `${legacy}.imported`);
}
