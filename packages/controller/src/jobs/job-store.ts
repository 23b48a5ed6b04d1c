import { readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { errnoCode, terminalSafe, writeFileAtomic } from '@borgpull/protocol';

export type JobKind = 'backup' | 'restore' | 'prune' | 'compact' | 'check';
export const JOB_KINDS: readonly JobKind[] = ['backup', 'restore', 'prune', 'compact', 'check'];
export type JobStatus = 'running' | 'succeeded' | 'warning' | 'failed' | 'offline';
export const JOB_STATUSES: readonly JobStatus[] = ['running', 'succeeded', 'warning', 'failed', 'offline'];
/** What started a job: a person, the schedule, an agent connecting, a retry after a failure, or the job before it. */
export type JobTrigger = 'manual' | 'schedule' | 'connect' | 'retry' | 'follow-up';

/** A backup that left a usable archive. */
export function isGood(job: JobRecord): boolean {
  return job.status === 'succeeded' || job.status === 'warning';
}

/** Which records a query returns (all given conditions hold), newest first. */
export interface JobQuery {
  readonly limit: number;
  readonly agent?: string;
  readonly kind?: JobKind;
  readonly status?: readonly JobStatus[];
}

export interface JobStats {
  nfiles?: number;
  /** Files read because they were new or changed; an unchanged run reads none. */
  changedFiles?: number;
  errorFiles?: number;
  originalSize?: number;
  compressedSize?: number;
  deduplicatedSize?: number;
  bytes?: number;
  files?: number;
  sha256?: string;
}

export interface JobRecord {
  readonly id: string;
  readonly kind: JobKind;
  readonly agent: string;
  archive?: string;
  readonly startedAt: number;
  endedAt?: number;
  trigger?: JobTrigger;
  status: JobStatus;
  /** Why it failed or warned, for a person. */
  reason?: string;
  code?: string;
  stats?: JobStats;
  /** Restore only. */
  method?: string;
  target?: string;
}

const KEEP = 1000;

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

/**
 * Job history: one JSON file, written atomically after every change.
 * Listeners added with `onEnd` hear of each record once it is saved with a
 * final status (the scheduler, alerts and metrics follow jobs that way).
 */
export class JobStore {
  private jobs: JobRecord[] = [];
  private readonly endListeners: Array<(job: JobRecord) => void> = [];
  private writing: Promise<void> = Promise.resolve();

  private constructor(private readonly path: string) {}

  static async open(path: string): Promise<JobStore> {
    const store = new JobStore(path);
    try {
      const raw = JSON.parse(await readFile(path, 'utf8')) as { jobs?: JobRecord[] };
      store.jobs = Array.isArray(raw.jobs) ? raw.jobs : [];
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    return store;
  }

  /** Jobs that were running when a previous daemon died: they failed. */
  async failInterrupted(): Promise<JobRecord[]> {
    const stale = this.jobs.filter((j) => j.status === 'running');
    for (const j of stale) {
      j.status = 'failed';
      j.code = 'E_JOB_INTERRUPTED';
      j.reason = 'the controller stopped while this job ran';
      j.endedAt ??= Date.now();
    }
    if (stale.length) await this.save();
    return stale;
  }

  async add(job: JobRecord): Promise<void> {
    this.jobs.push(job);
    if (this.jobs.length > KEEP) this.jobs.splice(0, this.jobs.length - KEEP);
    await this.save();
    this.ended(job);
  }

  /** Saves the store; `job` is one of its records, changed in place by its owner. */
  async update(job: JobRecord): Promise<void> {
    await this.save();
    this.ended(job);
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
    const out: JobRecord[] = [];
    for (let i = this.jobs.length - 1; i >= 0 && out.length < q.limit; i--) {
      const j = this.jobs[i]!;
      if (q.agent !== undefined && j.agent !== q.agent) continue;
      if (q.kind !== undefined && j.kind !== q.kind) continue;
      if (q.status !== undefined && !q.status.includes(j.status)) continue;
      out.push(j);
    }
    return out;
  }

  /** The newest record of `agent`'s jobs of `kind` for which `pred` holds (any, without one). */
  latest(agent: string, kind: JobKind, pred: (job: JobRecord) => boolean = () => true): JobRecord | undefined {
    for (let i = this.jobs.length - 1; i >= 0; i--) {
      const j = this.jobs[i]!;
      if (j.agent === agent && j.kind === kind && pred(j)) return j;
    }
    return undefined;
  }

  recent(limit: number, agent?: string): JobRecord[] {
    return this.query(agent === undefined ? { limit } : { limit, agent });
  }

  private save(): Promise<void> {
    const snapshot = JSON.stringify({ jobs: this.jobs }, null, 1) + '\n';
    this.writing = this.writing.catch(() => undefined).then(() => writeFileAtomic(this.path, snapshot, 0o600));
    return this.writing;
  }
}
