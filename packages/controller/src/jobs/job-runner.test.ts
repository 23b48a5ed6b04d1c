import { validateConfig } from '../config.js';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentLink } from '../agent-link.js';
import type { AgentRecord } from '../registry.js';
import { statePaths, type StatePaths } from '../state.js';
import type { JobContext } from './job-context.js';
import type { JobEvent } from './job-event.js';
import { JobRunner, type JobOps } from './job-runner.js';
import type { JobRecord } from './job-store.js';

const log = pino({ level: 'silent' });

/** A promise and its resolver: the test decides when a fake step ends. */
function gate<T = void>(): { promise: Promise<T>; open: (v: T) => void } {
  let open!: (v: T) => void;
  const promise = new Promise<T>((r) => (open = r));
  return { promise, open };
}

const agents: AgentRecord[] = [
  { name: 'pc1', publicKey: 'k1', enrolledAt: 1, port: 41001 } as AgentRecord,
  { name: 'pc2', publicKey: 'k2', enrolledAt: 1, port: 41002 } as AgentRecord,
  { name: 'pc3', publicKey: 'k3', enrolledAt: 1, port: 41003 } as AgentRecord,
];
const registry = { get: (n: string) => agents.find((a) => a.name === n), agents: () => agents };
/** Connected agents: a unit test of the runner needs only their name and state. */
const links = new Map<string, AgentLink>([
  ['pc1', Object.assign(Object.create(AgentLink.prototype) as AgentLink, { name: 'pc1', state: 'open' })],
  ['pc2', Object.assign(Object.create(AgentLink.prototype) as AgentLink, { name: 'pc2', state: 'open' })],
  ['pc3', Object.assign(Object.create(AgentLink.prototype) as AgentLink, { name: 'pc3', state: 'open' })],
]);

let jobSeq = 0;

/** A fake backup: records the job, waits for `until` or for cancellation, then cleans up. */
function fakeBackup(until: Promise<void>, seen: string[]): JobOps['backup'] {
  return async (ctx: JobContext, agent, _emit, cancel) => {
    ctx.link(agent);
    const job: JobRecord = {
      id: `job-${agent}-${++jobSeq}`,
      kind: 'backup',
      agent,
      startedAt: Date.now(),
      status: 'running',
      trigger: ctx.trigger,
    };
    await ctx.store.add(job);
    ctx.running.add(job.id);
    seen.push(`started ${agent}`);
    const cancelled = new Promise<void>((resolve) => cancel.addEventListener('abort', () => resolve(), { once: true }));
    await Promise.race([until, cancelled]);
    if (cancel.aborted) {
      job.status = 'failed';
      job.code = (cancel.reason as { code?: string }).code;
    } else job.status = 'succeeded';
    // the cleanup stack
    await new Promise((r) => setTimeout(r, 20));
    seen.push(`cleaned up ${agent}`);
    ctx.running.delete(job.id);
    job.endedAt = Date.now();
    await ctx.store.update(job);
    return job;
  };
}

describe('JobRunner', () => {
  let dir: string;
  let paths: StatePaths;
  const runners: JobRunner[] = [];

  const runner = (ops: Partial<JobOps>, parallel = 2): JobRunner => {
    const r = new JobRunner({
      paths,
      registry,
      links,
      config: validateConfig({ url: 'ws://127.0.0.1:7400', parallel }),
      log,
      ops: {
        backup: () => Promise.reject(new Error('no backup expected')),
        restore: () => Promise.reject(new Error('no restore expected')),
        breakStaleJobLock: () => Promise.resolve(false),
        discardArchive: () => Promise.resolve([]),
        ...ops,
      },
    });
    runners.push(r);
    return r;
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'bp-runner-'));
    paths = statePaths(dir);
  });

  afterEach(async () => {
    await Promise.all(runners.splice(0).map((r) => r.stop(0, 'test over')));
    rmSync(dir, { recursive: true, force: true });
  });

  it('start() recovers from a dead daemon before any command runs: jobs failed, locks broken, archives discarded', async () => {
    const interrupted: JobRecord[] = [
      { id: 'old-1', kind: 'backup', agent: 'pc1', archive: 'pc1-2026-11-29T10:00:00', startedAt: 1, status: 'running' },
      { id: 'old-2', kind: 'restore', agent: 'pc2', startedAt: 2, status: 'running' },
      { id: 'old-3', kind: 'backup', agent: 'pc2', startedAt: 3, status: 'succeeded', endedAt: 4 },
    ];
    // The history file of earlier versions: imported at start.
    writeFileSync(paths.legacyJobs, JSON.stringify({ jobs: interrupted }));
    const steps: string[] = [];
    const discarding = gate<string[]>();
    const r = runner({
      breakStaleJobLock: (_p, agent) => {
        steps.push(`break lock ${agent}`);
        return Promise.resolve(true);
      },
      discardArchive: async (_p, agent, archive) => {
        steps.push(`discard ${agent} ${archive}`);
        return discarding.promise;
      },
      backup: fakeBackup(Promise.resolve(), steps),
    });
    const started = r.start();
    // Commands that arrive while recovery runs wait for it.
    const listed = r.recent(10);
    const backedUp = r.backup({ all: false, names: ['pc2'] }, () => undefined, new AbortController().signal);
    // Recovery has reached the discard (opening the history fsyncs: no fixed sleep); the backup still waits.
    await waitFor(() => steps.length >= 2);
    await new Promise((res) => setTimeout(res, 50));
    expect(steps).toEqual(['break lock pc1', 'discard pc1 pc1-2026-11-29T10:00:00']);
    expect(r.state).toBe('starting');
    discarding.open(['pc1-2026-11-29T10:00:00']);
    await started;
    expect(r.state).toBe('running');
    const recent = await listed;
    expect(recent.map((j) => [j.id, j.status, j.code])).toEqual([
      ['old-3', 'succeeded', undefined],
      ['old-2', 'failed', 'E_JOB_INTERRUPTED'],
      ['old-1', 'failed', 'E_JOB_INTERRUPTED'],
    ]);
    await backedUp;
    expect(steps.slice(2)).toEqual(['started pc2', 'cleaned up pc2']);
    const stored = readFileSync(paths.jobs, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as JobRecord);
    expect(stored.filter((j) => j.id === 'old-1').at(-1)?.status).toBe('failed');
  });

  it('stop(grace) takes no new work and lets a running job finish within the grace', async () => {
    const steps: string[] = [];
    const finish = gate();
    const r = runner({ backup: fakeBackup(finish.promise, steps) });
    await r.start();
    const outcome = r.backup({ all: false, names: ['pc1'] }, () => undefined, new AbortController().signal);
    await waitFor(() => steps.includes('started pc1'));
    const stopped = r.stop(60_000, 'SIGTERM');
    await expect(r.backup({ all: false, names: ['pc2'] }, () => undefined, new AbortController().signal)).rejects.toMatchObject({
      code: 'E_DAEMON_STOPPING',
    });
    await expect(r.recent(5)).rejects.toMatchObject({ code: 'E_DAEMON_STOPPING' });
    expect(r.state).toBe('stopping');
    // Well inside the grace, the job is left alone (nothing to wait for: the absence of a cancel is the point).
    await new Promise((res) => setTimeout(res, 100));
    expect(steps).toEqual(['started pc1']);
    finish.open();
    await stopped;
    expect(r.state).toBe('stopped');
    expect((await outcome)[0]).toMatchObject({ agent: 'pc1', status: 'succeeded' });
    expect(steps).toEqual(['started pc1', 'cleaned up pc1']);
  });

  it('stop(grace) cancels a job still running after the grace, and returns once its cleanup ran', async () => {
    const steps: string[] = [];
    const r = runner({ backup: fakeBackup(new Promise(() => undefined), steps) });
    await r.start();
    const outcome = r.backup({ all: false, names: ['pc1'] }, () => undefined, new AbortController().signal);
    await waitFor(() => steps.includes('started pc1'));
    const t0 = Date.now();
    await r.stop(150, 'SIGTERM');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(steps).toEqual(['started pc1', 'cleaned up pc1']);
    expect((await outcome)[0]).toMatchObject({ agent: 'pc1', status: 'failed', code: 'E_JOB_CANCELLED' });
    // Idempotent.
    await r.stop(0, 'again');
  });

  it('a second job for a busy agent waits its turn (shown queued, with its place) instead of failing; other agents run', async () => {
    const steps: string[] = [];
    const finish = gate();
    const r = runner({ backup: fakeBackup(finish.promise, steps) }, 4);
    await r.start();
    const signal = new AbortController().signal;
    const first = r.backup({ all: false, names: ['pc1'] }, () => undefined, signal);
    await waitFor(() => steps.includes('started pc1'));
    expect([...r.busyAgents()].map(([agent, b]) => [agent, b.kind])).toEqual([['pc1', 'backup']]);

    const events: JobEvent[] = [];
    const second = r.backup({ all: false, names: ['pc1'] }, (e) => events.push(e), signal);
    await waitFor(() => events.length > 0);
    expect(events[0]).toMatchObject({ agent: 'pc1', phase: 'queued', position: 1, waitingFor: 'agent' });
    expect(r.queuedJobs()).toEqual([{ agent: 'pc1', kind: 'backup' }]);

    const other = r.backup({ all: false, names: ['pc2'] }, () => undefined, signal);
    await waitFor(() => steps.includes('started pc2'));
    expect(steps.filter((x) => x === 'started pc1')).toHaveLength(1);
    finish.open();
    const [a] = await first;
    const [b] = await second;
    expect(a).toMatchObject({ agent: 'pc1', status: 'succeeded', trigger: 'manual' });
    expect(b).toMatchObject({ agent: 'pc1', status: 'succeeded' });
    expect((b as JobRecord).id).not.toBe((a as JobRecord).id);
    // One at a time on the repository: the second started after the first was cleaned up.
    expect(steps.filter((x) => x.endsWith('pc1'))).toEqual(['started pc1', 'cleaned up pc1', 'started pc1', 'cleaned up pc1']);
    expect((await other)[0]).toMatchObject({ status: 'succeeded' });
    expect(r.busyAgents().size).toBe(0);
  });

  it('hands out parallel slots first come, first served across agents', async () => {
    const steps: string[] = [];
    const gates = new Map<string, ReturnType<typeof gate>>();
    const backup: JobOps['backup'] = async (ctx, agent, emit, cancel) => {
      const g = gate();
      gates.set(`${agent}#${steps.filter((x) => x === `started ${agent}`).length + 1}`, g);
      return fakeBackup(g.promise, steps)(ctx, agent, emit, cancel);
    };
    const r = runner({ backup }, 1);
    await r.start();
    const signal = new AbortController().signal;
    const order = ['pc1', 'pc2', 'pc1', 'pc3'];
    const outcomes: Array<Promise<unknown>> = [];
    for (const n of order) {
      outcomes.push(r.backupOne(n, 'schedule', () => undefined, signal));
      // Each is in the queue before the next comes: the queue's order is the order of arrival.
      await waitFor(() => r.busyAgents().size + r.queuedJobs().length === outcomes.length);
    }
    // The second pc1 joined nothing: the first had already started, so it waits as a job of its own.
    expect(r.queuedJobs().map((j) => j.agent)).toEqual(['pc2', 'pc1', 'pc3']);
    const finishNext = async (key: string): Promise<void> => {
      await waitFor(() => gates.has(key));
      gates.get(key)!.open();
    };
    await finishNext('pc1#1');
    await finishNext('pc2#1');
    await finishNext('pc1#2');
    await finishNext('pc3#1');
    await Promise.all(outcomes);
    expect(steps.filter((x) => x.startsWith('started'))).toEqual(['started pc1', 'started pc2', 'started pc1', 'started pc3']);
  });

  it('a backup asked for while one for the same agent is queued joins it: one job, both hear it', async () => {
    const steps: string[] = [];
    const finish = gate();
    let backups = 0;
    const r = runner(
      {
        backup: (ctx, agent, emit, cancel) => {
          backups++;
          emit({ agent, jobId: `j${backups}`, phase: 'tunnel' });
          return fakeBackup(finish.promise, steps)(ctx, agent, emit, cancel);
        },
      },
      1,
    );
    await r.start();
    const signal = new AbortController().signal;
    // pc2 holds the only slot; pc1's scheduled backup queues; then someone asks for pc1 by hand.
    const holder = r.backupOne('pc2', 'schedule', () => undefined, signal);
    await waitFor(() => steps.includes('started pc2'));
    const scheduled = r.backupOne('pc1', 'schedule', () => undefined, signal);
    await waitFor(() => r.queuedJobs().length === 1);
    const manualEvents: JobEvent[] = [];
    const manual = r.backup({ all: false, names: ['pc1'] }, (e) => manualEvents.push(e), signal);
    await waitFor(() => manualEvents.length > 0);
    expect(manualEvents[0]).toMatchObject({ phase: 'queued', position: 1, waitingFor: 'slot' });
    expect(r.queuedJobs()).toEqual([{ agent: 'pc1', kind: 'backup' }]);
    finish.open();
    const [m] = await manual;
    const s = await scheduled;
    await holder;
    expect(backups).toBe(2);
    expect(m).toEqual(s);
    expect(s).toMatchObject({ agent: 'pc1', status: 'succeeded', trigger: 'schedule' });
    // The manual requester saw the joined job's own events.
    expect(manualEvents.map((e) => e.phase)).toContain('tunnel');
  });

  it('a queued backup whose requester goes away never starts and is not recorded; a joined one runs while anyone still wants it', async () => {
    const steps: string[] = [];
    const finish = gate();
    const r = runner({ backup: fakeBackup(finish.promise, steps) }, 1);
    await r.start();
    const keep = new AbortController().signal;
    const holder = r.backupOne('pc2', 'manual', () => undefined, keep);
    await waitFor(() => steps.includes('started pc2'));

    const cli = new AbortController();
    const lone = r.backup({ all: false, names: ['pc1'] }, () => undefined, cli.signal);
    await waitFor(() => r.queuedJobs().length === 1);
    cli.abort(new Error('admin client went away'));
    expect((await lone)[0]).toMatchObject({ agent: 'pc1', status: 'failed', code: 'E_JOB_CANCELLED' });
    expect((await lone)[0]).not.toHaveProperty('id');
    expect(r.queuedJobs()).toEqual([]);

    const scheduled = r.backupOne('pc3', 'schedule', () => undefined, keep);
    const cli2 = new AbortController();
    const joined = r.backup({ all: false, names: ['pc3'] }, () => undefined, cli2.signal);
    await waitFor(() => r.queuedJobs().length === 1);
    cli2.abort(new Error('admin client went away'));
    finish.open();
    await holder;
    expect(await scheduled).toMatchObject({ agent: 'pc3', status: 'succeeded' });
    await joined.catch(() => undefined);
    expect((await r.recent(10)).map((j) => j.agent).sort()).toEqual(['pc2', 'pc3']);
  });

  it('a restore waits for the agent’s running job, but not for a parallel slot', async () => {
    const steps: string[] = [];
    const finish = gate();
    const restores: string[] = [];
    const r = runner(
      {
        backup: fakeBackup(finish.promise, steps),
        restore: async (ctx, req) => {
          restores.push(`${req.agent} while busy: ${[...ctx.running].join(',') || 'nothing'}`);
          const job: JobRecord = {
            id: `r-${++jobSeq}`,
            kind: 'restore',
            agent: req.agent,
            startedAt: 1,
            status: 'succeeded',
            trigger: ctx.trigger,
          };
          await ctx.store.add(job);
          return job;
        },
      },
      1,
    );
    await r.start();
    const signal = new AbortController().signal;
    const req = (agent: string) => ({ agent, archive: 'a', paths: [], method: 'stream' as const, target: '/', dryRun: false });
    const b = r.backupOne('pc1', 'manual', () => undefined, signal);
    await waitFor(() => steps.includes('started pc1'));
    // pc2: the only slot is taken, and a restore does not need one.
    expect(await r.restore(req('pc2'), () => undefined, signal)).toMatchObject({ agent: 'pc2', trigger: 'manual' });
    const events: JobEvent[] = [];
    const waiting = r.restore(req('pc1'), (e) => events.push(e), signal);
    await waitFor(() => events.length > 0);
    expect(events[0]).toMatchObject({ phase: 'queued', waitingFor: 'agent' });
    expect(restores).toHaveLength(1);
    finish.open();
    await b;
    await waiting;
    // pc2's restore ran beside pc1's backup; pc1's only once that backup was over.
    expect(restores[0]).toMatch(/^pc2 while busy: job-pc1-\d+$/);
    expect(restores[1]).toBe('pc1 while busy: nothing');
  });

  it('an agent that is not connected is reported offline at once, not after a wait for a slot', async () => {
    const steps: string[] = [];
    const finish = gate();
    const offlineAware: JobOps['backup'] = async (ctx, agent, emit, cancel) => {
      try {
        ctx.link(agent);
      } catch (err) {
        const job: JobRecord = {
          id: `off-${++jobSeq}`,
          kind: 'backup',
          agent,
          startedAt: Date.now(),
          endedAt: Date.now(),
          status: 'offline',
          code: (err as { code?: string }).code,
        };
        await ctx.store.add(job);
        return job;
      }
      return fakeBackup(finish.promise, steps)(ctx, agent, emit, cancel);
    };
    const r = runner({ backup: offlineAware }, 1);
    await r.start();
    const signal = new AbortController().signal;
    const busy = r.backupOne('pc1', 'manual', () => undefined, signal);
    await waitFor(() => steps.includes('started pc1'));
    agents.push({ name: 'away', publicKey: 'k9', enrolledAt: 1, port: 41009 } as AgentRecord);
    try {
      const [o] = await r.backup({ all: false, names: ['away'] }, () => undefined, signal);
      expect(o).toMatchObject({ agent: 'away', status: 'offline', code: 'E_AGENT_OFFLINE' });
      expect(steps).toEqual(['started pc1']);
    } finally {
      agents.pop();
    }
    finish.open();
    await busy;
  });

  it('stop() refuses the queued jobs at once (they never start) and lets the running one finish', async () => {
    const steps: string[] = [];
    const finish = gate();
    const r = runner({ backup: fakeBackup(finish.promise, steps) }, 1);
    await r.start();
    const signal = new AbortController().signal;
    const running = r.backup({ all: false, names: ['pc1'] }, () => undefined, signal);
    await waitFor(() => steps.includes('started pc1'));
    const queued = r.backup({ all: false, names: ['pc2', 'pc3'] }, () => undefined, signal);
    await waitFor(() => r.queuedJobs().length === 2);
    const stopped = r.stop(60_000, 'SIGTERM');
    const q = await queued;
    expect(q.map((o) => [o.agent, o.status, o.code])).toEqual([
      ['pc2', 'failed', 'E_DAEMON_STOPPING'],
      ['pc3', 'failed', 'E_DAEMON_STOPPING'],
    ]);
    finish.open();
    await stopped;
    expect((await running)[0]).toMatchObject({ status: 'succeeded' });
    expect(steps).toEqual(['started pc1', 'cleaned up pc1']);
  });

  it("runs a backup's follow-ups (prune, compact) in the same hold of the agent, before the backup's outcome returns", async () => {
    const steps: string[] = [];
    const pruning = gate();
    let seen: JobRecord | undefined;
    const r = runner({
      backup: fakeBackup(Promise.resolve(), steps),
      afterBackup: async (_ctx, job) => {
        seen = job;
        steps.push('prune');
        await pruning.promise;
        steps.push('compact');
      },
      check: (_ctx, agent, trigger) => {
        steps.push(`check ${agent} ${trigger}`);
        return Promise.resolve({ id: 'c1', kind: 'check', agent, startedAt: 1, status: 'succeeded' });
      },
    });
    await r.start();
    const signal = new AbortController().signal;
    let done = false;
    const outcome = r.backup({ all: false, names: ['pc1'] }, () => undefined, signal).then((o) => ((done = true), o));
    await waitFor(() => steps.includes('prune'));
    expect(seen).toMatchObject({ agent: 'pc1', status: 'succeeded' });
    // Still held: nothing else runs on the repository between the backup and its prune.
    expect([...r.busyAgents().keys()]).toEqual(['pc1']);
    const check = r.check('pc1', 'schedule', signal);
    await waitFor(() => r.queuedJobs().length === 1);
    expect(r.queuedJobs()).toEqual([{ agent: 'pc1', kind: 'check' }]);
    expect(done).toBe(false);
    pruning.open();
    expect((await outcome)[0]).toMatchObject({ status: 'succeeded' });
    await check;
    expect(steps).toEqual(['started pc1', 'cleaned up pc1', 'prune', 'compact', 'check pc1 schedule']);
    expect(r.busyAgents().size).toBe(0);
  });

  it("a follow-up that fails leaves the backup's outcome as it was", async () => {
    const r = runner({ backup: fakeBackup(Promise.resolve(), []), afterBackup: () => Promise.reject(new Error('prune exploded')) });
    await r.start();
    const [o] = await r.backup({ all: false, names: ['pc1'] }, () => undefined, new AbortController().signal);
    expect(o).toMatchObject({ status: 'succeeded' });
    expect(r.busyAgents().size).toBe(0);
  });

  it('refuses unknown agents and nothing to do before a job starts', async () => {
    const r = runner({});
    await r.start();
    const signal = new AbortController().signal;
    await expect(r.backup({ all: false, names: ['ghost'] }, () => undefined, signal)).rejects.toMatchObject({ code: 'E_AGENT_UNKNOWN' });
    await expect(r.backup({ all: false, names: [] }, () => undefined, signal)).rejects.toMatchObject({ code: 'E_JOB_NOTHING' });
  });

  it("hands each job config.json as it is now, but with the start's values of the keys checked at start", async () => {
    const seen: Array<{ sshPort: number; tunnelUser: string; timeLimit: number }> = [];
    const r = runner({
      backup: async (ctx, agent) => {
        const c = await ctx.config();
        seen.push({ sshPort: c.sshPort, tunnelUser: c.tunnelUser, timeLimit: c.timeLimit });
        return { id: 'j', kind: 'backup', agent, startedAt: 0, status: 'succeeded' };
      },
    });
    await r.start();
    // An edit after start: sshd-check.ts checked port 22 and user borgpull, not these.
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({ url: 'ws://127.0.0.1:7400', sshPort: 2222, tunnelUser: 'root', timeLimit: '1h' }),
    );
    await r.backup({ all: false, names: ['pc1'] }, () => undefined, new AbortController().signal);
    expect(seen).toEqual([{ sshPort: 22, tunnelUser: 'borgpull', timeLimit: 3600 }]);
  });
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
