/**
 * When jobs run by themselves: a daily window in the controller's local time
 * (`02:00-05:00`, may cross midnight: `22:00-04:00`), an interval
 * (`every 6h`), or `off`. Parsed like any config value: the whole grammar or
 * an error text naming what is wrong; bounded.
 */
import { formatDuration, parseDuration } from '../units.js';

export type Schedule =
  | { readonly kind: 'off' }
  /** Minutes after local midnight; `end < start` crosses midnight. */
  | { readonly kind: 'window'; readonly start: number; readonly end: number }
  | { readonly kind: 'every'; readonly seconds: number };

export const OFF: Schedule = Object.freeze({ kind: 'off' });
/** One second: the e2e tests run intervals of seconds. */
export const MIN_INTERVAL = 1;
/** A year: a longer interval is a typo. */
export const MAX_INTERVAL = 366 * 86_400;

const WINDOW_RE = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$/;

/** A schedule from its config form; an error text (for the caller to name its field) when it is not one. */
export function parseSchedule(v: unknown): Schedule | string {
  const usage = `must be "off", a daily window such as "02:00-05:00", or an interval such as "every 6h"`;
  if (typeof v !== 'string' || v.length > 64) return usage;
  if (v === 'off') return OFF;
  const w = WINDOW_RE.exec(v);
  if (w) {
    const start = Number(w[1]) * 60 + Number(w[2]);
    const end = Number(w[3]) * 60 + Number(w[4]);
    if (start === end) return `'${v}' is an empty window (for all day, use "every 24h")`;
    return Object.freeze({ kind: 'window', start, end });
  }
  const e = /^every (.+)$/.exec(v);
  if (e) {
    const s = parseDuration(e[1], MIN_INTERVAL, MAX_INTERVAL);
    return typeof s === 'number' ? Object.freeze({ kind: 'every', seconds: s }) : `'${v.slice(0, 64)}': the interval ${s}`;
  }
  return `'${v}' ${usage}`;
}

/** The config form parseSchedule reads back. */
export function formatSchedule(s: Schedule): string {
  switch (s.kind) {
    case 'off':
      return 'off';
    case 'every':
      return `every ${formatDuration(s.seconds)}`;
    case 'window':
      return `${hhmm(s.start)}-${hhmm(s.end)}`;
  }
}

function hhmm(min: number): string {
  return `${String(Math.floor(min / 60)).padStart(2, '0')}:${String(min % 60).padStart(2, '0')}`;
}

/** A window's length in wall-clock minutes (crossing midnight included). */
export function windowMinutes(s: { readonly start: number; readonly end: number }): number {
  return (s.end - s.start + 1440) % 1440;
}

const HOUR = 3_600_000;

/**
 * How old an agent's last good backup may be before it is behind: the
 * longest gap the schedule itself leaves between two regular runs. A daily
 * window: a day, plus the window (a run early in one window, the next late
 * in the next), plus an hour for the day that DST makes 25 hours long. An
 * interval: the interval. `null` for `off`: never behind by schedule.
 * Queueing and the job's own duration come on top (status adds its margin).
 */
export function maxAge(s: Schedule): number | null {
  switch (s.kind) {
    case 'off':
      return null;
    case 'every':
      return s.seconds * 1000;
    case 'window':
      return 25 * HOUR + windowMinutes(s) * 60_000;
  }
}

/** For people: "daily between 01:00 and 06:00 (local time)", "every 6h", "never (off)". */
export function describeSchedule(s: Schedule): string {
  switch (s.kind) {
    case 'off':
      return 'never (off)';
    case 'every':
      return `every ${formatDuration(s.seconds)}`;
    case 'window':
      return `daily between ${hhmm(s.start)} and ${hhmm(s.end)} (local time)`;
  }
}
