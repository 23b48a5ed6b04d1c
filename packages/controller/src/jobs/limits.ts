import { statfs } from 'node:fs/promises';
import type { ControllerConfig } from '../config.js';
import { ControllerError } from '../errors.js';
import { formatDuration, formatSize } from '../units.js';
import { BorgLogReader } from './job-script/output.js';

/**
 * What bounds one job, so that a client that serves an endless file or tree,
 * or stalls, cannot hold a `parallel` slot forever or fill the disk every
 * repository shares: a time limit, a repository quota and a free-space floor.
 * The config is read at every job, so edits apply to the next one.
 */
export interface JobLimits {
  /** Seconds. */
  readonly timeLimit: number;
  /** The config key it came from, for messages. */
  readonly timeLimitKey: string;
  /** Bytes; 0 = none. */
  readonly quota: number;
  readonly quotaKey: string;
}

export function jobLimits(config: ControllerConfig, agent: string): JobLimits {
  const a = config.agents[agent];
  return {
    timeLimit: a?.timeLimit ?? config.timeLimit,
    timeLimitKey: a?.timeLimit === undefined ? 'timeLimit' : `agents.${agent}.timeLimit`,
    quota: a?.quota ?? config.quota,
    quotaKey: a?.quota === undefined ? 'quota' : `agents.${agent}.quota`,
  };
}

/** setTimeout's largest delay (~24.8 days); longer limits re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A job's deadline. `signal` aborts when the caller's signal does or the limit
 * passes; it goes where the job's cancellation already goes (execa's
 * cancelSignal, which kills the job script and with it its PID and mount
 * namespaces, then the cleanup stack runs). `explain` turns whatever error the
 * killed job then failed with into the time limit's own.
 */
export class TimeLimit {
  readonly signal: AbortSignal;
  private readonly ac = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private fired: ControllerError | undefined;

  constructor(
    outer: AbortSignal,
    private readonly seconds: number,
    private readonly key: string,
  ) {
    this.signal = AbortSignal.any([outer, this.ac.signal]);
    const deadline = Date.now() + seconds * 1000;
    const arm = (): void => {
      const left = deadline - Date.now();
      if (left > 0) {
        this.timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
        return;
      }
      this.timer = undefined;
      if (outer.aborted) return;
      this.fired = new ControllerError(
        'E_JOB_TIME_LIMIT',
        `cancelled after the time limit of ${formatDuration(this.seconds)} (config ${this.key})`,
      );
      this.ac.abort(this.fired);
    };
    arm();
  }

  /** True once the limit has cancelled the job. */
  get expired(): boolean {
    return this.fired !== undefined;
  }

  /** The error to record for a job that failed: the limit's, if it fired. */
  explain(err: unknown): unknown {
    return this.fired ?? err;
  }

  /** For waits that take no signal: rejects with the limit's error when it fires. */
  race<T>(p: Promise<T>): Promise<T> {
    return Promise.race([
      p,
      new Promise<never>((_, reject) => {
        const onAbort = (): void => {
          if (this.fired) reject(this.fired);
        };
        if (this.signal.aborted) onAbort();
        else this.signal.addEventListener('abort', onAbort, { once: true });
        void p.finally(() => this.signal.removeEventListener('abort', onAbort)).catch(() => undefined);
      }),
    ]);
  }

  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * Refuses to start a backup while the repositories' file system is below the
 * floor: a backup started there would fail half-way with ENOSPC, and could
 * leave borg without the room to commit or compact any repository on it.
 */
export async function checkFreeSpace(dir: string, floor: number): Promise<void> {
  if (floor === 0) return;
  const s = await statfs(dir);
  const free = s.bavail * s.bsize;
  if (free < floor) {
    throw new ControllerError(
      'E_JOB_DISK_LOW',
      `only ${formatSize(free)} free on ${dir}, below the floor of ${formatSize(floor)} (config minFreeSpace): make room (borg delete, then borg compact) or lower the floor`,
    );
  }
}

export function quotaError(limits: JobLimits): ControllerError {
  const what = limits.quota === 0 ? 'its storage quota' : `its quota of ${formatSize(limits.quota)} (config ${limits.quotaKey})`;
  return new ControllerError(
    'E_JOB_QUOTA',
    `the backup would take the repository past ${what}: delete old archives and run borg compact, or raise the quota`,
  );
}

/** borg's message id for a commit refused by storage_quota (borg 1.1 and later). */
const QUOTA_MSGID = 'Repository.StorageQuotaExceeded';

/**
 * borg's log reader that also notices a quota refusal, by borg's message id
 * (a code), never by its text. File names in borg's JSON lines are escaped
 * strings inside other fields: a client naming a file after the id changes nothing.
 */
export class QuotaWatchingReader extends BorgLogReader {
  quotaExceeded = false;
  private partial = '';

  override push(chunk: string): void {
    this.partial += chunk;
    let nl: number;
    while ((nl = this.partial.indexOf('\n')) >= 0) {
      const line = this.partial.slice(0, nl);
      this.partial = this.partial.slice(nl + 1);
      if (line.includes(QUOTA_MSGID)) this.check(line);
    }
    if (this.partial.length > 1 << 20) this.partial = this.partial.slice(-4096);
    super.push(chunk);
  }

  private check(line: string): void {
    try {
      const m = JSON.parse(line) as unknown;
      if (
        typeof m === 'object' &&
        m !== null &&
        (m as Record<string, unknown>)['type'] === 'log_message' &&
        (m as Record<string, unknown>)['msgid'] === QUOTA_MSGID
      ) {
        this.quotaExceeded = true;
      }
    } catch {
      /* not one of borg's JSON lines */
    }
  }
}
