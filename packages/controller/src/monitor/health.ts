/**
 * One agent's health, from its job history: the age of its last good backup
 * against the thresholds, and whether its last backup or check failed. The
 * same judgement serves `controller status`, the `overdue` alert and the
 * metrics, so they never disagree.
 */
import { isGood, type JobRecord } from '../jobs/job-store.js';
import type { StatusSettings } from './monitor-config.js';

/** Nagios' order: 0 OK, 1 WARNING, 2 CRITICAL; `controller status` exits with the worst. */
export type HealthLevel = 0 | 1 | 2;

/** Without a schedule to derive them from: a daily backup may be two hours late before it warns, a whole day before it is overdue. */
export const DEFAULT_WARN_AFTER = 26 * 3600;
export const DEFAULT_OVERDUE_AFTER = 48 * 3600;

export interface Thresholds {
  /** Seconds; null: this agent's age is never judged (its schedule is off). */
  readonly warnAfter: number | null;
  readonly overdueAfter: number | null;
}

/**
 * The thresholds for one agent. Set in config (`status.warnAfter`,
 * `status.overdueAfter`) they apply to every agent. Unset, and with the
 * scheduler's `maxAge` for the agent (seconds; null when its schedule is
 * off), an agent warns past maxAge and is overdue past twice that; without
 * a scheduler, the defaults above.
 */
export function thresholds(cfg: StatusSettings, maxAge?: number | null): Thresholds {
  // (the daemon passes undefined for an agent whose schedule is off: judged by the defaults)
  const derivedWarn = maxAge === undefined ? DEFAULT_WARN_AFTER : maxAge;
  const derivedOverdue = maxAge === undefined ? DEFAULT_OVERDUE_AFTER : maxAge === null ? null : 2 * maxAge;
  const overdueAfter = cfg.overdueAfter ?? derivedOverdue;
  let warnAfter = cfg.warnAfter ?? derivedWarn;
  if (warnAfter !== null && overdueAfter !== null && warnAfter > overdueAfter) warnAfter = overdueAfter;
  return { warnAfter, overdueAfter };
}

/** What the history says of one agent; the caller looks the records up (store.latest). */
export interface HealthInput {
  readonly enrolledAt: number;
  /** The newest backup that left a usable archive. */
  readonly lastGood?: JobRecord;
  /** The newest backup that ran to an end (not running, not skipped because the agent was offline). */
  readonly lastBackup?: JobRecord;
  /** The newest check that ran to an end. */
  readonly lastCheck?: JobRecord;
}

export interface Health {
  readonly level: HealthLevel;
  /** The age of the last good backup is past overdueAfter (or never, and enrolled longer than that). */
  readonly overdue: boolean;
  /** Why the level is not 0, one phrase each, for people. */
  readonly problems: string[];
}

function age(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86_400)}d`;
}

export function judge(h: HealthInput, t: Thresholds, now: number): Health {
  const problems: string[] = [];
  let level: HealthLevel = 0;
  const raise = (l: HealthLevel, why: string): void => {
    if (l > level) level = l;
    problems.push(why);
  };
  // An agent never backed up is judged from its enrollment: a new one is not overdue.
  const since = h.lastGood?.endedAt ?? h.lastGood?.startedAt ?? h.enrolledAt;
  const old = Math.max(0, (now - since) / 1000);
  const what = h.lastGood ? `last good backup ${age(old)} ago` : `no good backup since enrolled ${age(old)} ago`;
  const overdue = t.overdueAfter !== null && old > t.overdueAfter;
  if (overdue) raise(2, `overdue: ${what} (limit ${age(t.overdueAfter)})`);
  else if (t.warnAfter !== null && old > t.warnAfter) raise(1, `${what} (warning after ${age(t.warnAfter)})`);
  if (h.lastBackup?.status === 'failed') raise(2, `last backup failed${h.lastBackup.code ? ` (${h.lastBackup.code})` : ''}`);
  else if (h.lastBackup?.status === 'warning') raise(1, 'last backup ended with warnings');
  if (h.lastCheck && !isGood(h.lastCheck)) raise(2, `last check failed${h.lastCheck.code ? ` (${h.lastCheck.code})` : ''}`);
  return { level, overdue, problems };
}

/** The records judge() needs, from anything with the JobStore's `latest`. */
export function healthInput(
  store: { latest(agent: string, kind: JobRecord['kind'], pred?: (j: JobRecord) => boolean): JobRecord | undefined },
  agent: string,
  enrolledAt: number,
): HealthInput {
  const ended = (j: JobRecord): boolean => j.status !== 'running' && j.status !== 'offline';
  return {
    enrolledAt,
    lastGood: store.latest(agent, 'backup', isGood),
    lastBackup: store.latest(agent, 'backup', ended),
    lastCheck: store.latest(agent, 'check', ended),
  };
}
