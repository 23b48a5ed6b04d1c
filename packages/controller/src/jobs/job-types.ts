/** What a job record is; job-store.ts re-exports all of it (import from there). */
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
  /** Only jobs started at or after this time (ms since the epoch). */
  readonly since?: number;
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
  /** Prune: archives kept and deleted by the keep rules. */
  archivesKept?: number;
  archivesDeleted?: number;
  /** Compact: bytes of segment files given back, and what the segments take after it. */
  freedBytes?: number;
  repositoryBytes?: number;
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
