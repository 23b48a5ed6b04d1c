/**
 * The schedule's arithmetic, as pure functions of their inputs (the clock is
 * an argument, the time zone is the process's): when an agent's next run is
 * due, how long a failed one waits before its retry, and what a fresh
 * connection changes.
 */
import { createHash } from 'node:crypto';
import type { Schedule } from './schedule.js';
import { windowMinutes } from './schedule.js';

/**
 * A stable number in [0, 1) for `key` (an agent name): where in a window that
 * agent runs. From a hash, so it is the same after every restart and
 * hundreds of agents spread evenly instead of starting at once.
 */
export function spread(key: string): number {
  const h = createHash('sha256').update(key).digest();
  return h.readUIntBE(0, 6) / 2 ** 48;
}

/** Local midnight-based times of day `day` (a Date at any time of that local day). */
function localAt(day: Date, minutes: number, seconds = 0): number {
  // Wall-clock arithmetic through the Date constructor: a time that does not
  // exist (spring forward) moves forward by the gap, a time that happens twice
  // (fall back) is its first occurrence, and minutes past 24:00 roll into the next day.
  return new Date(day.getFullYear(), day.getMonth(), day.getDate(), 0, minutes, seconds).getTime();
}

/**
 * When `agent` is next due under `schedule`, its last run having started at
 * `last` (epoch ms; undefined: never ran, due now). `null` for `off`. A
 * time at or before `now` means due now: a missed run, owed once however
 * many slots were missed.
 *
 * A window has one run per day, at the agent's own offset into it (`spread`),
 * in the process's local time. Any run that started in or after a window's
 * start (by hand, on connect, a retry) counts for that window: the next is in
 * the first window that starts after `last`. An interval is `last` plus the
 * interval.
 */
export function nextRun(schedule: Schedule, agent: string, last: number | undefined, now: number): number | null {
  if (schedule.kind === 'off') return null;
  if (last === undefined) return now;
  if (schedule.kind === 'every') return last + schedule.seconds * 1000;
  const offset = Math.floor(spread(agent) * windowMinutes(schedule) * 60);
  const day = new Date(last);
  if (localAt(day, schedule.start) <= last) day.setDate(day.getDate() + 1);
  return localAt(day, schedule.start, offset);
}

export const RETRY_FIRST_MS = 5 * 60_000;
export const RETRY_MAX_MS = 2 * 3_600_000;

/** The wait after the `failures`-th failure in a row: 5 min, doubling, at most 2 h. */
export function retryDelay(failures: number): number {
  const n = Math.max(1, Math.min(failures, 32));
  return Math.min(RETRY_FIRST_MS * 2 ** (n - 1), RETRY_MAX_MS);
}

/** What the history says about one agent and one kind of job. */
export interface RunHistory {
  /** The newest attempt (not an 'offline' record: that job never reached the agent). */
  readonly last?: { readonly startedAt: number; readonly endedAt?: number; readonly failed: boolean };
  /** Failed attempts in a row, newest first, since the last good one. */
  readonly failures: number;
}

export interface PlanInput {
  readonly schedule: Schedule;
  readonly agent: string;
  readonly now: number;
  readonly history: RunHistory;
  /** Where the schedule starts when the history is empty (undefined: due at once). */
  readonly firstBase?: number;
  /** When the agent's current connection opened; undefined: not connected. */
  readonly connectedAt?: number;
  /** The settle delay after a connection (ms). */
  readonly settleMs: number;
}

/** How long after its settle delay a connection still counts as the reason for a run. */
export const CONNECT_FRESH_MS = 60_000;

export type PlanTrigger = 'schedule' | 'retry' | 'connect';

export interface Plan {
  /** Due at (epoch ms; at or before `now`: due now). */
  readonly at: number;
  readonly trigger: PlanTrigger;
}

/**
 * When the next job of this kind is due, and why. The regular run follows
 * the last attempt (`nextRun`); after a failure the retry comes earlier if
 * its back-off ends before that run, never later. A run that came due while
 * the agent was away is the connection's (trigger 'connect'), and nothing
 * starts before a fresh connection has settled: `settleMs` plus up to half
 * that again, from the agent's name, so a thousand agents reconnecting after
 * a controller restart come in spread (they queue under `parallel` anyway).
 */
export function plan(i: PlanInput): Plan | null {
  if (i.schedule.kind === 'off') return null;
  const base = i.history.last?.startedAt ?? i.firstBase;
  let at = base === undefined ? Number.NEGATIVE_INFINITY : nextRun(i.schedule, i.agent, base, i.now)!;
  let trigger: PlanTrigger = 'schedule';
  const last = i.history.last;
  if (last?.failed && i.history.failures > 0) {
    const retry = (last.endedAt ?? last.startedAt) + retryDelay(i.history.failures);
    if (retry < at) {
      at = retry;
      trigger = 'retry';
    }
  }
  if (i.connectedAt !== undefined) {
    const settled = i.connectedAt + i.settleMs + Math.floor(spread(`${i.agent}/connect`) * i.settleMs * 0.5);
    // The connection's own run: it came due while the agent was away, and
    // the connection is fresh (a schedule turned on for an agent connected
    // for hours is the schedule's).
    if (at < i.connectedAt && i.now <= settled + CONNECT_FRESH_MS) trigger = 'connect';
    at = Math.max(at, settled);
  }
  return { at: Number.isFinite(at) ? at : i.now, trigger };
}
