import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RETRY_FIRST_MS, RETRY_MAX_MS, nextRun, plan, retryDelay, spread, type PlanInput } from './next-run.js';
import { formatSchedule, maxAge, parseSchedule, type Schedule } from './schedule.js';

const MIN = 60_000;
const HOUR = 60 * MIN;

function sched(s: string): Schedule {
  const r = parseSchedule(s);
  if (typeof r === 'string') throw new Error(r);
  return r;
}

/** Runs `body` with the process in time zone `tz` (Node re-reads TZ when it is assigned). */
function inZone(tz: string): void {
  let old: string | undefined;
  beforeAll(() => {
    old = process.env['TZ'];
    process.env['TZ'] = tz;
  });
  afterAll(() => {
    if (old === undefined) delete process.env['TZ'];
    else process.env['TZ'] = old;
  });
}

/** Local wall-clock time of `ms` as "YYYY-MM-DD HH:MM:SS" in the process's zone. */
function local(ms: number): string {
  const d = new Date(ms);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** The local time of day of `ms`, in minutes (with fractions). */
function minuteOf(ms: number): number {
  const d = new Date(ms);
  return d.getHours() * 60 + d.getMinutes() + d.getSeconds() / 60;
}

/** An agent whose spread puts it at `frac` of a window (found by search, so the tests need no magic names). */
function agentNear(frac: number, tol = 0.02): string {
  for (let i = 0; i < 100_000; i++) if (Math.abs(spread(`pc${i}`) - frac) < tol) return `pc${i}`;
  throw new Error('no agent name found');
}

describe('parseSchedule', () => {
  it.each([
    ['off', { kind: 'off' }],
    ['02:00-05:00', { kind: 'window', start: 120, end: 300 }],
    ['22:00-04:00', { kind: 'window', start: 1320, end: 240 }],
    ['00:00-23:59', { kind: 'window', start: 0, end: 1439 }],
    ['every 6h', { kind: 'every', seconds: 21_600 }],
    ['every 1s', { kind: 'every', seconds: 1 }],
    ['every 1h30m', { kind: 'every', seconds: 5400 }],
    ['every 7d', { kind: 'every', seconds: 7 * 86_400 }],
  ])('reads %s', (text, want) => {
    expect(parseSchedule(text)).toEqual(want);
    expect(formatSchedule(sched(text))).toBe(text === 'every 7d' ? 'every 7d' : text);
  });

  it.each([
    ['empty', ''],
    ['no leading zero', '2:00-05:00'],
    ['hour 24', '24:00-05:00'],
    ['minute 60', '02:60-05:00'],
    ['empty window', '03:00-03:00'],
    ['spaces', ' 02:00-05:00'],
    ['seconds in a window', '02:00:00-05:00:00'],
    ['interval zero', 'every 0s'],
    ['interval unit missing', 'every 6'],
    ['interval negative', 'every -6h'],
    ['interval over a year', 'every 400d'],
    ['interval as Number() reads it', 'every 1e3s'],
    ['a cron line', '0 2 * * *'],
    ['not a string', 3600],
    ['null', null],
    ['too long', `every ${'1'.repeat(80)}s`],
    ['case', 'OFF'],
  ])('refuses %s', (_what, v) => {
    expect(typeof parseSchedule(v)).toBe('string');
  });
});

describe('maxAge', () => {
  it('is the longest gap the schedule leaves between regular runs', () => {
    expect(maxAge(sched('off'))).toBeNull();
    expect(maxAge(sched('every 6h'))).toBe(6 * HOUR);
    expect(maxAge(sched('02:00-05:00'))).toBe(28 * HOUR);
    expect(maxAge(sched('22:00-04:00'))).toBe(31 * HOUR);
  });

  describe('a backup older than maxAge is always due (Berlin, across a year)', () => {
    inZone('Europe/Berlin');
    it.each(['01:00-05:00', '22:00-04:00', '02:30-02:45', 'every 5s', 'every 6h'])('%s', (s) => {
      const schedule = sched(s);
      const max = maxAge(schedule)!;
      const t0 = Date.UTC(2026, 0, 1);
      for (let k = 0; k < 2000; k++) {
        const last = t0 + Math.floor((((k * 7919) % 1000) / 1000) * 365 * 24 * HOUR) + k * 13_001;
        expect(nextRun(schedule, `pc${k}`, last, last + max + 1)!).toBeLessThanOrEqual(last + max + 1);
      }
    });
  });
});

describe('spread', () => {
  it('is stable and in [0, 1)', () => {
    expect(spread('laptop')).toBe(spread('laptop'));
    for (let i = 0; i < 1000; i++) {
      const s = spread(`pc${i}`);
      expect(s).toBeGreaterThanOrEqual(0);
      expect(s).toBeLessThan(1);
    }
  });

  it('spreads 1000 agents over a window: no 10-minute bucket of a 3-hour window holds more than twice its share', () => {
    const buckets = new Array<number>(18).fill(0);
    for (let i = 0; i < 1000; i++) buckets[Math.floor(spread(`agent-${i}`) * 18)]!++;
    expect(Math.max(...buckets)).toBeLessThan((1000 / 18) * 2);
    expect(Math.min(...buckets)).toBeGreaterThan(1000 / 18 / 2);
  });
});

describe('nextRun: daily windows', () => {
  inZone('Europe/Berlin');
  const w = sched('02:00-05:00');

  it('runs at the agent’s own offset into the window, one run per window', () => {
    const early = agentNear(0.1);
    const late = agentNear(0.9);
    // Last ran yesterday at 03:00: today's slot.
    const last = new Date(2026, 5, 9, 3, 0).getTime();
    const now = new Date(2026, 5, 10, 1, 0).getTime();
    const e = nextRun(w, early, last, now)!;
    const l = nextRun(w, late, last, now)!;
    // 10% and 90% into 180 minutes (agentNear finds names within 2%, 3.6 minutes).
    expect(local(e)).toMatch(/^2026-06-10 /);
    expect(Math.abs(minuteOf(e) - 138)).toBeLessThanOrEqual(3.6);
    expect(local(l)).toMatch(/^2026-06-10 /);
    expect(Math.abs(minuteOf(l) - (120 + 162))).toBeLessThanOrEqual(3.6);
    // The same after a "restart": nothing but the inputs counts.
    expect(nextRun(w, early, last, now)).toBe(e);
    // Any run that started in or after today's window start counts for it: next is tomorrow's.
    expect(local(nextRun(w, late, new Date(2026, 5, 10, 2, 5).getTime(), now)!)).toMatch(/^2026-06-11 04:/);
    expect(local(nextRun(w, late, new Date(2026, 5, 10, 2, 0).getTime(), now)!)).toMatch(/^2026-06-11 04:/);
    // A run just before the window (a manual backup at 01:59) does not.
    expect(local(nextRun(w, late, new Date(2026, 5, 10, 1, 59).getTime(), now)!)).toMatch(/^2026-06-10 04:/);
    // A run after the window (backed up on connect at noon): tomorrow's.
    expect(local(nextRun(w, late, new Date(2026, 5, 10, 12, 0).getTime(), now)!)).toMatch(/^2026-06-11 04:/);
  });

  it('a window crossing midnight: the slot may fall on the next day', () => {
    const x = sched('22:00-04:00');
    const a = agentNear(0.75); // 22:00 + 4.5 h = 02:30 next day
    const last = new Date(2026, 5, 9, 23, 0).getTime(); // inside the 9th's window
    const n = nextRun(x, a, last, last)!;
    expect(local(n)).toMatch(/^2026-06-11 0[12]:/);
    // A run at 01:00 on the 10th is still inside the window that opened on the 9th.
    const n2 = nextRun(x, a, new Date(2026, 5, 10, 1, 0).getTime(), last)!;
    expect(local(n2)).toMatch(/^2026-06-11 0[12]:/);
    // Before the 10th's window opens (21:00): that window.
    const n3 = nextRun(x, a, new Date(2026, 5, 10, 21, 0).getTime(), last)!;
    expect(local(n3)).toMatch(/^2026-06-11 0[12]:/);
    const b = agentNear(0.1); // 22:36, that same evening
    const nb = nextRun(x, b, new Date(2026, 5, 10, 21, 0).getTime(), last)!;
    expect(local(nb)).toMatch(/^2026-06-10 22:/);
    expect(Math.abs(minuteOf(nb) - (22 * 60 + 36))).toBeLessThanOrEqual(7.2);
  });

  it('missed runs (controller down for days) are due once, then back on the schedule', () => {
    const a = agentNear(0.5);
    const last = new Date(2026, 5, 1, 3, 0).getTime();
    const now = new Date(2026, 5, 5, 14, 0).getTime();
    const due = nextRun(w, a, last, now)!;
    expect(due).toBeLessThan(now); // due now: one run, however many slots were missed
    // It runs now; the next one is tomorrow's slot, not another missed one.
    expect(local(nextRun(w, a, now, now)!)).toMatch(/^2026-06-06 03:/);
  });
});

describe.each(['Europe/Berlin', 'America/New_York'])('nextRun across DST in %s', (tz) => {
  inZone(tz);
  // Spring forward: Berlin 2026-03-29 02:00 -> 03:00; New York 2026-03-08 02:00 -> 03:00.
  // Fall back: Berlin 2026-10-25 03:00 -> 02:00; New York 2026-11-01 02:00 -> 01:00.
  const spring = tz === 'Europe/Berlin' ? [2026, 2, 29] : [2026, 2, 8];
  const fall = tz === 'Europe/Berlin' ? [2026, 9, 25] : [2026, 10, 1];
  const [sy, sm, sd] = spring as [number, number, number];
  const [fy, fm, fd] = fall as [number, number, number];

  it('a slot inside the hour that does not exist runs once, just after the jump', () => {
    const w = sched('02:00-03:00');
    const a = agentNear(0.5); // 02:30, which does not exist that night
    const last = new Date(sy, sm, sd - 1, 2, 30).getTime();
    const n = nextRun(w, a, last, last)!;
    // At 03:30 new time: the instant 02:30 would have been, so a day of
    // real time after the day before's run; on that day, not skipped.
    expect(local(n)).toMatch(new RegExp(`^${sy}-0${sm + 1}-${String(sd).padStart(2, '0')} 03:(2[5-9]|3[0-5])`));
    expect(n - last).toBeGreaterThan(23.9 * HOUR);
    expect(n - last).toBeLessThan(24.1 * HOUR);
    // Once: the run at that time leads to the next day's slot at 02:30 again.
    const after = nextRun(w, a, n, n)!;
    expect(local(after)).toMatch(new RegExp(`^${sy}-0${sm + 1}-${String(sd + 1).padStart(2, '0')} 02:(2[5-9]|3[0-5])`));
  });

  it('a slot in the hour that happens twice runs once, at its first occurrence', () => {
    const start = tz === 'Europe/Berlin' ? '02:00-03:00' : '01:00-02:00';
    const w = sched(start);
    const a = agentNear(0.5); // :30 past the first hour of the window: twice that night
    const last = new Date(fy, fm, fd - 1, tz === 'Europe/Berlin' ? 2 : 1, 30).getTime();
    const n = nextRun(w, a, last, last)!;
    // 25 hours of real time from the day before: the first of the two.
    expect(n - last).toBeGreaterThan(23.9 * HOUR);
    expect(n - last).toBeLessThan(24.1 * HOUR);
    // Ran at the first occurrence: at the second occurrence (an hour later, same wall time) it is not due again.
    const second = n + HOUR;
    expect(local(second).slice(11, 13)).toBe(local(n).slice(11, 13));
    const after = nextRun(w, a, n, second)!;
    expect(after).toBeGreaterThan(second);
    expect(after - n).toBeGreaterThan(24.9 * HOUR);
    expect(after - n).toBeLessThan(25.1 * HOUR);
  });

  it('a window that spans the change keeps its wall-clock times', () => {
    const w = sched('01:00-05:00');
    const a = agentNear(0.5); // 03:00 wall time
    for (const [y, m, d] of [spring, fall] as Array<[number, number, number]>) {
      const n = nextRun(w, a, new Date(y, m, d - 1, 12, 0).getTime(), 0)!;
      expect(local(n)).toMatch(/ 0[23]:/);
      expect(new Date(n).getDate()).toBe(d);
    }
  });
});

describe('nextRun: intervals and off', () => {
  it('an interval follows the last run; never ran: due now; off: never', () => {
    const e = sched('every 6h');
    expect(nextRun(e, 'pc1', 1_000_000, 2_000_000)).toBe(1_000_000 + 6 * HOUR);
    expect(nextRun(e, 'pc1', undefined, 2_000_000)).toBe(2_000_000);
    // Missed many intervals: due once (a time in the past), not once per interval.
    expect(nextRun(e, 'pc1', 0, 100 * HOUR)).toBe(6 * HOUR);
    expect(nextRun(sched('every 1s'), 'pc1', 5000, 5000)).toBe(6000);
    expect(nextRun(sched('off'), 'pc1', 0, 0)).toBeNull();
    expect(nextRun(sched('off'), 'pc1', undefined, 0)).toBeNull();
  });
});

describe('retryDelay', () => {
  it('5 min doubling to at most 2 h', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 100, 1e9].map(retryDelay)).toEqual([5, 10, 20, 40, 80, 120, 120, 120, 120].map((m) => m * MIN));
    expect(retryDelay(0)).toBe(RETRY_FIRST_MS);
    for (let n = 1; n < 50; n++) {
      expect(retryDelay(n)).toBeLessThanOrEqual(RETRY_MAX_MS);
      expect(retryDelay(n + 1)).toBeGreaterThanOrEqual(retryDelay(n));
    }
  });
});

describe('plan', () => {
  const T = Date.UTC(2026, 5, 10, 12);
  const base = (over: Partial<PlanInput>): PlanInput => ({
    schedule: sched('every 6h'),
    agent: 'pc1',
    now: T,
    history: { failures: 0 },
    settleMs: 30_000,
    ...over,
  });

  it('regular run after a good one', () => {
    expect(plan(base({ history: { last: { startedAt: T - HOUR, failed: false }, failures: 0 } }))).toEqual({
      at: T + 5 * HOUR,
      trigger: 'schedule',
    });
    expect(plan(base({ schedule: sched('off') }))).toBeNull();
  });

  it('retries with back-off after failures, never past the next regular run', () => {
    const failedAt = T - MIN;
    const at = (failures: number, every = '6h'): number =>
      plan(
        base({
          schedule: sched(`every ${every}`),
          history: { last: { startedAt: failedAt - MIN, endedAt: failedAt, failed: true }, failures },
        }),
      )!.at;
    expect(at(1)).toBe(failedAt + 5 * MIN);
    expect(at(3)).toBe(failedAt + 20 * MIN);
    expect(at(10)).toBe(failedAt + 2 * HOUR);
    // The regular run comes first: the back-off does not delay it.
    expect(at(10, '30m')).toBe(failedAt - MIN + 30 * MIN);
    expect(plan(base({ history: { last: { startedAt: T, endedAt: T, failed: true }, failures: 2 } }))!.trigger).toBe('retry');
  });

  it('never backed up: due at once, or after the settle delay of a fresh connection', () => {
    expect(plan(base({}))).toEqual({ at: T, trigger: 'schedule' });
    const p = plan(base({ connectedAt: T - 1000 }))!;
    expect(p.trigger).toBe('connect');
    expect(p.at).toBeGreaterThanOrEqual(T - 1000 + 30_000);
    expect(p.at).toBeLessThanOrEqual(T - 1000 + 45_000);
  });

  it('a run that came due while the agent was away is the connection’s, after the settle delay', () => {
    const history = { last: { startedAt: T - 7 * HOUR, failed: false }, failures: 0 };
    const p = plan(base({ history, connectedAt: T }))!;
    expect(p.trigger).toBe('connect');
    expect(p.at).toBeGreaterThanOrEqual(T + 30_000);
    // The settle delay long over (a schedule turned on for an agent connected for hours): the schedule's run.
    const long = plan(base({ connectedAt: T - 2 * HOUR }))!;
    expect(long.trigger).toBe('schedule');
    expect(long.at).toBeLessThanOrEqual(T);
    // Connected long ago: due now, by the schedule.
    expect(plan(base({ history, connectedAt: T - 2 * HOUR }))).toEqual({ at: T - HOUR, trigger: 'schedule' });
    // Not behind: a connection changes nothing.
    expect(plan(base({ history: { last: { startedAt: T - HOUR, failed: false }, failures: 0 }, connectedAt: T }))).toEqual({
      at: T + 5 * HOUR,
      trigger: 'schedule',
    });
  });

  it('a thousand agents reconnecting at once are spread over the settle delay', () => {
    const ats = Array.from({ length: 1000 }, (_, i) => plan(base({ agent: `pc${i}`, connectedAt: T }))!.at - T);
    expect(Math.min(...ats)).toBeGreaterThanOrEqual(30_000);
    expect(Math.max(...ats)).toBeLessThanOrEqual(45_000);
    expect(new Set(ats).size).toBeGreaterThan(900);
  });

  it('checks start from their first base (enrolment), not at once', () => {
    const p = plan(base({ schedule: sched('every 7d'), firstBase: T - HOUR }))!;
    expect(p.at).toBe(T - HOUR + 7 * 86_400_000);
  });
});
