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
];
const registry = { get: (n: string) => agents.find((a) => a.name === n), agents: () => agents };
/** Connected agents: a unit test of the runner needs only their name and state. */
const links = new Map<string, AgentLink>([
  ['pc1', Object.assign(Object.create(AgentLink.prototype) as AgentLink, { name: 'pc1', state: 'open' })],
  ['pc2', Object.assign(Object.create(AgentLink.prototype) as AgentLink, { name: 'pc2', state: 'open' })],
]);

/** A fake backup: records the job, waits for `until` or for cancellation, then cleans up. */
function fakeBackup(until: Promise<void>, seen: string[]): JobOps['backup'] {
  return async (ctx: JobContext, agent, _emit, cancel) => {
    ctx.link(agent);
    const job: JobRecord = { id: `job-${agent}`, kind: 'backup', agent, startedAt: Date.now(), status: 'running' };
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
    writeFileSync(paths.jobs, JSON.stringify({ jobs: interrupted }));
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
    const stored = JSON.parse(readFileSync(paths.jobs, 'utf8')) as { jobs: JobRecord[] };
    expect(stored.jobs.find((j) => j.id === 'old-1')?.status).toBe('failed');
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

  it('keeps busy agents as state: a second job for a busy agent is refused, other agents run', async () => {
    const steps: string[] = [];
    const finish = gate();
    const r = runner({ backup: fakeBackup(finish.promise, steps) }, 4);
    await r.start();
    const signal = new AbortController().signal;
    const first = r.backup({ all: false, names: ['pc1'] }, () => undefined, signal);
    await waitFor(() => steps.includes('started pc1'));
    expect([...r.busyAgents()].map(([agent, b]) => [agent, b.kind])).toEqual([['pc1', 'backup']]);

    await expect(
      r.restore({ agent: 'pc1', archive: 'a', paths: [], method: 'stream', target: '/', dryRun: false }, () => undefined, signal),
    ).rejects.toMatchObject({
      code: 'E_JOB_BUSY',
    });
    const second = await r.backup({ all: false, names: ['pc1'] }, () => undefined, signal);
    // Not a job record: no job ran, so there is no id to show or look up.
    expect(second).toEqual([expect.objectContaining({ agent: 'pc1', status: 'failed', code: 'E_JOB_BUSY' })]);
    expect(second[0]).not.toHaveProperty('id');

    const other = r.backup({ all: false, names: ['pc2'] }, () => undefined, signal);
    await waitFor(() => steps.includes('started pc2'));
    finish.open();
    expect((await first)[0]).toMatchObject({ status: 'succeeded' });
    expect((await other)[0]).toMatchObject({ status: 'succeeded' });
    expect(r.busyAgents().size).toBe(0);
    // The busy refusal was never stored as a job.
    expect((await r.recent(10)).map((j) => j.agent).sort()).toEqual(['pc1', 'pc2']);
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
