import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { JobKind, JobQuery, JobRecord, JobStatus, JobTrigger } from '../jobs/job-store.js';
import { parseSchedule, type Schedule } from './schedule.js';
import { checkKind, Scheduler, type ScheduledKind } from './scheduler.js';

const log = pino({ level: 'silent' });
const S = 1000;
const MIN = 60 * S;
const T0 = Date.UTC(2026, 5, 10, 12);

function sched(s: string): Schedule {
  const r = parseSchedule(s);
  if (typeof r === 'string') throw new Error(r);
  return r;
}

/** The job history as the scheduler reads it (query newest first, onEnd): in memory, for a unit test of the scheduler alone. */
class FakeStore {
  readonly jobs: JobRecord[] = [];
  private readonly listeners: Array<(j: JobRecord) => void> = [];
  query(q: JobQuery): JobRecord[] {
    return this.jobs
      .filter((j) => (q.agent === undefined || j.agent === q.agent) && (q.kind === undefined || j.kind === q.kind))
      .filter((j) => q.status === undefined || q.status.includes(j.status))
      .reverse()
      .slice(0, q.limit);
  }
  onEnd(l: (j: JobRecord) => void): () => void {
    this.listeners.push(l);
    return () => this.listeners.splice(this.listeners.indexOf(l), 1);
  }
  add(j: JobRecord): void {
    this.jobs.push(j);
  }
  end(j: JobRecord, status: JobStatus): void {
    j.status = status;
    j.endedAt = Date.now();
    for (const l of this.listeners) l(j);
  }
}

let seq = 0;

describe('Scheduler', () => {
  let store: FakeStore;
  let connected: Map<string, number>;
  let started: Array<{ agent: string; kind: JobKind; trigger: JobTrigger; at: number }>;
  /** How the next jobs end: 'succeeded' unless a test says otherwise; 'reject' never starts. */
  let outcome: (agent: string) => JobStatus | 'reject' | 'hang';
  let schedulers: Scheduler[];

  const job =
    (kind: JobKind): ScheduledKind['run'] =>
    async (agent, trigger) => {
      started.push({ agent, kind, trigger, at: Date.now() });
      const o = outcome(agent);
      if (o === 'reject') throw new Error('never started');
      const j: JobRecord = { id: `j${++seq}`, kind, agent, startedAt: Date.now(), status: 'running', trigger };
      store.add(j);
      if (o === 'hang') return new Promise(() => undefined);
      // A job takes a few seconds.
      await new Promise((r) => setTimeout(r, 3 * S));
      store.end(j, o);
      return j;
    };

  const make = (schedule: string, opts: { agents?: string[]; settleMs?: number; kinds?: ScheduledKind[] } = {}): Scheduler => {
    const s = new Scheduler({
      store,
      agents: () => opts.agents ?? ['pc1', 'pc2'],
      connectedAt: (a) => connected.get(a),
      settleMs: () => opts.settleMs ?? 30 * S,
      kinds: opts.kinds ?? [{ kind: 'backup', schedule: () => sched(schedule), run: job('backup') }],
      log,
    });
    schedulers.push(s);
    s.start();
    return s;
  };

  beforeEach(() => {
    vi.useFakeTimers({ now: T0 });
    store = new FakeStore();
    connected = new Map([
      ['pc1', T0 - 3_600 * S],
      ['pc2', T0 - 3_600 * S],
    ]);
    started = [];
    outcome = () => 'succeeded';
    schedulers = [];
  });

  afterEach(() => {
    for (const s of schedulers) s.stop();
    vi.useRealTimers();
  });

  const ran = (agent: string): number[] => started.filter((x) => x.agent === agent).map((x) => x.at - T0);

  it('backs up every agent on an interval, by itself, with one timer for all of them', async () => {
    make('every 10s');
    await vi.advanceTimersByTimeAsync(45 * S);
    // Never backed up: at once; then every 10 s from each start.
    expect(ran('pc1')).toEqual([0, 10 * S, 20 * S, 30 * S, 40 * S]);
    expect(ran('pc2')).toEqual([0, 10 * S, 20 * S, 30 * S, 40 * S]);
    expect(started.every((x) => x.trigger === 'schedule')).toBe(true);
    // One scheduler timer (plus the fake jobs' own, one per running job).
    const running = store.jobs.filter((j) => j.status === 'running').length;
    expect(vi.getTimerCount()).toBe(1 + running);
  });

  it('after a restart, knows from the history what already ran; missed runs run once', async () => {
    store.add({ id: 'old', kind: 'backup', agent: 'pc1', startedAt: T0 - 4 * S, endedAt: T0 - 2 * S, status: 'succeeded' });
    // pc2 last ran 10 intervals ago (the controller was down): one run now, not ten.
    store.add({ id: 'older', kind: 'backup', agent: 'pc2', startedAt: T0 - 100 * S, endedAt: T0 - 98 * S, status: 'succeeded' });
    make('every 10s');
    await vi.advanceTimersByTimeAsync(15 * S);
    expect(ran('pc1')).toEqual([6 * S]);
    expect(ran('pc2')).toEqual([0, 10 * S]);
  });

  it('an offline agent is not started (nor retried in a loop); when it connects, it is backed up after the settle delay', async () => {
    connected.delete('pc2');
    const s = make('every 1h', { settleMs: 10 * S });
    await vi.advanceTimersByTimeAsync(30 * MIN);
    expect(ran('pc1')).toEqual([0]);
    expect(ran('pc2')).toEqual([]);
    expect(s.nextRun('pc2')).toBe(T0 + 30 * MIN); // due: only waiting for the agent
    connected.set('pc2', Date.now());
    s.agentConnected('pc2');
    await vi.advanceTimersByTimeAsync(9 * S);
    expect(ran('pc2')).toEqual([]);
    await vi.advanceTimersByTimeAsync(6 * S + 1);
    expect(ran('pc2')).toHaveLength(1);
    expect(ran('pc2')[0]).toBeGreaterThanOrEqual(30 * MIN + 10 * S);
    expect(ran('pc2')[0]).toBeLessThanOrEqual(30 * MIN + 15 * S);
    expect(started.find((x) => x.agent === 'pc2')?.trigger).toBe('connect');
  });

  it('an agent that reconnects but is not behind is not backed up again', async () => {
    store.add({ id: 'g', kind: 'backup', agent: 'pc1', startedAt: T0 - MIN, endedAt: T0 - MIN, status: 'succeeded' });
    const s = make('every 1h', { agents: ['pc1'] });
    connected.set('pc1', T0 + 5 * S);
    await vi.advanceTimersByTimeAsync(5 * S);
    s.agentConnected('pc1');
    await vi.advanceTimersByTimeAsync(10 * MIN);
    expect(ran('pc1')).toEqual([]);
  });

  it('retries a failure with back-off (5, 10, 20 min), never past the next regular run; success resets it', async () => {
    let fails = 3;
    outcome = () => (fails-- > 0 ? 'failed' : 'succeeded');
    make('every 1h', { agents: ['pc1'] });
    await vi.advanceTimersByTimeAsync(3 * 3_600 * S);
    const at = ran('pc1');
    const triggers = started.map((x) => x.trigger);
    // 0: fails (ends at 3 s); +5 min: fails; +10 min: fails; +20 min: succeeds; then hourly.
    expect(at.slice(0, 4)).toEqual([0, 3 * S + 5 * MIN, 6 * S + 15 * MIN, 9 * S + 35 * MIN]);
    expect(triggers.slice(0, 4)).toEqual(['schedule', 'retry', 'retry', 'retry']);
    expect(at[4]).toBe(at[3]! + 60 * MIN);
    expect(triggers[4]).toBe('schedule');
  });

  it('the back-off stops at the next regular run', async () => {
    outcome = () => 'failed';
    make('every 15m', { agents: ['pc1'] });
    await vi.advanceTimersByTimeAsync(61 * MIN);
    const at = ran('pc1');
    // Retries at +5 and +10 min, then the regular run every 15 min comes first.
    expect(at.slice(0, 3)).toEqual([0, 3 * S + 5 * MIN, 6 * S + 15 * MIN]);
    for (let i = 1; i < at.length; i++) expect(at[i]! - at[i - 1]!).toBeLessThanOrEqual(15 * MIN + 3 * S);
  });

  it('a run that never started (no record) is not retried in a tight loop', async () => {
    outcome = () => 'reject';
    make('every 1s', { agents: ['pc1'] });
    await vi.advanceTimersByTimeAsync(20 * MIN);
    expect(ran('pc1')).toEqual([0, 5 * MIN, 10 * MIN, 15 * MIN, 20 * MIN]);
  });

  it('never starts a second job while one of the kind runs (by hand or its own)', async () => {
    store.add({ id: 'manual', kind: 'backup', agent: 'pc1', startedAt: T0 - 2 * 3_600 * S, status: 'running', trigger: 'manual' });
    outcome = () => 'hang';
    make('every 10s');
    await vi.advanceTimersByTimeAsync(60 * S);
    expect(ran('pc1')).toEqual([]);
    expect(ran('pc2')).toEqual([0]);
  });

  it('off: nothing runs, nextRun is null; the schedule of each agent is its own', async () => {
    const schedules: Record<string, string> = { pc1: 'off', pc2: 'every 10s' };
    const s = make('', { kinds: [{ kind: 'backup', schedule: (a) => sched(schedules[a]!), run: job('backup') }] });
    await vi.advanceTimersByTimeAsync(25 * S);
    expect(ran('pc1')).toEqual([]);
    expect(s.nextRun('pc1')).toBeNull();
    expect(ran('pc2')).toEqual([0, 10 * S, 20 * S]);
    // A reload that turns pc1 on takes effect at the next poke, without a restart.
    schedules['pc1'] = 'every 10s';
    s.poke();
    await vi.advanceTimersByTimeAsync(1);
    expect(ran('pc1')).toEqual([25 * S]);
  });

  it('runs checks on their own schedule, first one interval after enrolment', async () => {
    const kinds = [
      { kind: 'backup' as const, schedule: () => sched('every 1h'), run: job('backup') },
      checkKind({ schedule: () => sched('every 2h'), check: job('check'), enrolledAt: () => T0 - 30 * MIN }),
    ];
    make('', { agents: ['pc1'], kinds });
    await vi.advanceTimersByTimeAsync(4 * 3_600 * S);
    const checks = started.filter((x) => x.kind === 'check').map((x) => x.at - T0);
    expect(checks).toEqual([90 * MIN, 210 * MIN]);
    // Backups at 0, 1, 2, 3 and 4 h.
    expect(started.filter((x) => x.kind === 'backup')).toHaveLength(5);
  });

  it('a daily window: each agent at its own time, once a day', async () => {
    process.env['TZ'] = 'UTC';
    try {
      const agents = Array.from({ length: 50 }, (_, i) => `host${i}`);
      for (const a of agents) {
        connected.set(a, T0 - 3_600 * S);
        store.add({ id: `g-${a}`, kind: 'backup', agent: a, startedAt: T0 - MIN, endedAt: T0, status: 'succeeded' });
      }
      make('01:00-05:00', { agents });
      await vi.advanceTimersByTimeAsync(48 * 3_600 * S);
      for (const a of agents) {
        const at = ran(a);
        expect(at).toHaveLength(2);
        expect(at[1]! - at[0]!).toBe(24 * 3_600 * S);
        const h = new Date(T0 + at[0]!).getUTCHours();
        expect(h).toBeGreaterThanOrEqual(1);
        expect(h).toBeLessThan(5);
      }
      // Spread: not all at once.
      expect(new Set(started.map((x) => x.at)).size).toBeGreaterThan(40);
    } finally {
      delete process.env['TZ'];
    }
  });

  it('agents that connect one after another are each planned once, not every agent at every connection', async () => {
    // After a controller restart a thousand agents reconnect; the old scheduler re-planned every
    // connected agent at each connection (quadratic: 5,000 agents could not all connect within a minute).
    const agents = Array.from({ length: 500 }, (_, i) => `host${i}`);
    connected.clear();
    for (const a of agents) store.add({ id: `g-${a}`, kind: 'backup', agent: a, startedAt: T0 - MIN, endedAt: T0, status: 'succeeded' });
    let queries = 0;
    const query = store.query.bind(store);
    store.query = (q) => {
      queries++;
      return query(q);
    };
    const s = make('every 1d', { agents });
    await vi.advanceTimersByTimeAsync(1);
    for (const a of agents) {
      connected.set(a, Date.now());
      s.agentConnected(a);
      await vi.advanceTimersByTimeAsync(1);
    }
    // Per connection: one look at the last good backup (the log line) and one plan.
    expect(queries).toBeLessThan(3 * agents.length);
    expect(started).toEqual([]);
    // And what is planned still runs: a day later, each once.
    await vi.advanceTimersByTimeAsync(24 * 3_600 * S);
    expect(new Set(started.map((x) => x.agent)).size).toBe(agents.length);
  });

  it('a backup by hand that starts while a connect backup waits out the settle delay: no second backup', async () => {
    // The README's quick start: an agent connects (never backed up: due after the delay), and the
    // user types 'controller backup' at once. Starting a job does not poke the scheduler.
    connected.delete('pc2');
    const s = make('every 1d', { settleMs: 30 * S });
    await vi.advanceTimersByTimeAsync(S);
    started.length = 0;
    connected.set('pc2', Date.now());
    s.agentConnected('pc2');
    await vi.advanceTimersByTimeAsync(S);
    const manual: JobRecord = { id: 'by-hand', kind: 'backup', agent: 'pc2', startedAt: Date.now(), status: 'running', trigger: 'manual' };
    store.add(manual);
    await vi.advanceTimersByTimeAsync(60 * S);
    expect(ran('pc2')).toEqual([]);
    store.end(manual, 'succeeded');
    await vi.advanceTimersByTimeAsync(10 * MIN);
    expect(ran('pc2')).toEqual([]);
  });
});
