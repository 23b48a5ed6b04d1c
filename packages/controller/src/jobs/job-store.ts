import { readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { errnoCode, terminalSafe, writeFileAtomic } from '@borgpull/protocol';

export type JobKind = 'backup' | 'restore';
export type JobStatus = 'running' | 'succeeded' | 'warning' | 'failed' | 'offline';

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

/** Job history: one JSON file, written atomically after every change. */
export class JobStore {
  private jobs: JobRecord[] = [];
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
  }

  /** Saves the store; `job` is one of its records, changed in place by its owner. */
  async update(_job: JobRecord): Promise<void> {
    await this.save();
  }

  recent(limit: number, agent?: string): JobRecord[] {
    return this.jobs
      .filter((j) => agent === undefined || j.agent === agent)
      .slice(-limit)
      .reverse();
  }

  private save(): Promise<void> {
    const snapshot = JSON.stringify({ jobs: this.jobs }, null, 1) + '\n';
    this.writing = this.writing.catch(() => undefined).then(() => writeFileAtomic(this.path, snapshot, 0o600));
    return this.writing;
  }
}
