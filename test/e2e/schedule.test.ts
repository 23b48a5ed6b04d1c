import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoLeftovers, cleanupAll, requireTools, waitFor, type HostSubprocess } from '../harness/index.js';
import { manyFiles, pidsMatching, startClient, startController, waitForAgent, type Client, type Controller, logLines } from './fixture.js';

interface Job {
  id: string;
  kind: string;
  agent: string;
  status: string;
  trigger?: string;
  startedAt: number;
  endedAt?: number;
}

/** A plain kill(2), as systemd sends it (execa's kill() adds a SIGKILL later). */
function kill(proc: HostSubprocess | undefined, sig: NodeJS.Signals): void {
  process.kill(proc!.pid!, sig);
}

async function jobs(ctl: Controller): Promise<Job[]> {
  const r = await ctl.cli(['jobs', '--json', '--limit', '500']);
  expect(r.exitCode, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as Job[]).reverse();
}

const backupsOf = (all: Job[], agent: string): Job[] => all.filter((j) => j.kind === 'backup' && j.agent === agent);

/** Changes config.json and makes the daemon re-read it (SIGHUP), waiting until it did. */
async function reconfigure(ctl: Controller, log: Array<Record<string, unknown>>, patch: Record<string, unknown>): Promise<void> {
  ctl.configure(patch);
  const reloaded = (): number => log.filter((l) => l['msg'] === 'config reloaded').length;
  const before = reloaded();
  kill(ctl.proc, 'SIGHUP');
  await waitFor('config reloaded', () => reloaded() > before, { timeoutMs: 10_000 });
}

async function idle(ctl: Controller): Promise<void> {
  await waitFor('no job running', async () => (await jobs(ctl)).every((j) => j.status !== 'running'), {
    timeoutMs: 120_000,
    intervalMs: 500,
  });
}

describe('schedules, backup on connect and the job queue (real controller, agents, sshd, borg)', () => {
  let ctl: Controller;
  let c1: Client;
  let c2: Client;
  let late: Client;
  let ctlLog: Array<Record<string, unknown>>;

  beforeAll(async () => {
    requireTools();
    ctl = await startController();
    ctlLog = logLines(ctl.proc);
    c1 = await startClient(ctl, 'pc1');
    c2 = await startClient(ctl, 'pc2');
    late = await startClient(ctl, 'late');
    for (const c of [c1, c2, late]) c.host.writeFiles({ 'data/a.txt': `${c.name}\n`, 'data/b/c.txt': 'c\n' });
    // Enrolled, then away: a laptop that is off.
    kill(late.agent, 'SIGTERM');
    await waitForAgent(ctl, 'late', false);
  }, 180_000);

  afterAll(async () => {
    await cleanupAll();
    assertNoLeftovers();
  });

  it('with an interval of seconds, backs up two clients by itself several times, one job per client at a time; an offline agent is left alone', async () => {
    expect(await jobs(ctl)).toEqual([]);
    await reconfigure(ctl, ctlLog, { schedule: 'every 5s', connectDelay: '1s' });
    await waitFor(
      'three scheduled backups of each client',
      async () => {
        const all = await jobs(ctl);
        return ['pc1', 'pc2'].every(
          (a) => backupsOf(all, a).filter((j) => j.status === 'succeeded' && j.trigger === 'schedule').length >= 3,
        );
      },
      { timeoutMs: 150_000, intervalMs: 1000 },
    );
    await reconfigure(ctl, ctlLog, { schedule: 'off' });
    await idle(ctl);
    const all = await jobs(ctl);
    for (const a of ['pc1', 'pc2']) {
      const b = backupsOf(all, a);
      expect(
        b.every((j) => j.status === 'succeeded'),
        JSON.stringify(b),
      ).toBe(true);
      // Nobody asked: every one was the schedule's (the first may be the connection's, were it fresh).
      expect(b.every((j) => j.trigger === 'schedule' || j.trigger === 'connect')).toBe(true);
      for (let i = 1; i < b.length; i++) {
        // One at a time, and each at least the interval after the one before.
        expect(b[i]!.startedAt).toBeGreaterThanOrEqual(b[i - 1]!.endedAt!);
        expect(b[i]!.startedAt - b[i - 1]!.startedAt).toBeGreaterThanOrEqual(5000);
      }
    }
    // The offline agent: not a single attempt (no 'offline' records piling up).
    expect(backupsOf(all, 'late')).toEqual([]);
  }, 240_000);

  it('an agent that connects late is backed up on connect, after the settle delay; agents that are not behind are not', async () => {
    const before = await jobs(ctl);
    await reconfigure(ctl, ctlLog, { schedule: 'every 24h', connectDelay: '3s' });
    const t0 = Date.now();
    await late.startAgent();
    await waitFor('a backup of the late agent', async () => backupsOf(await jobs(ctl), 'late').some((j) => j.status !== 'running'), {
      timeoutMs: 90_000,
      intervalMs: 500,
    });
    const all = await jobs(ctl);
    const [job, ...more] = backupsOf(all, 'late');
    expect(job, JSON.stringify(all)).toMatchObject({ status: 'succeeded', trigger: 'connect' });
    expect(more).toEqual([]);
    expect(job!.startedAt - t0).toBeGreaterThanOrEqual(3000);
    // pc1 and pc2 were backed up seconds ago: nothing new for them.
    expect(backupsOf(all, 'pc1')).toHaveLength(backupsOf(before, 'pc1').length);
    expect(backupsOf(all, 'pc2')).toHaveLength(backupsOf(before, 'pc2').length);
    await reconfigure(ctl, ctlLog, { schedule: 'off' });
  }, 180_000);

  it('a manual backup while one runs for the same agent is shown queued, then runs after it and succeeds', async () => {
    await idle(ctl);
    // Enough small files for the first backup to still run when the second is asked for.
    c1.host.writeFiles(manyFiles(6000));
    const first = ctl.cli(['backup', 'pc1'], 300_000);
    await waitFor('borg create for pc1', () => pidsMatching('borg', 'create', `${ctl.state}/repos/pc1::`).length > 0, {
      timeoutMs: 60_000,
      intervalMs: 50,
    });
    const second = await ctl.cli(['backup', 'pc1'], 300_000);
    const one = await first;
    expect(one.exitCode, one.stderr).toBe(0);
    expect(second.exitCode, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/pc1\s+queued \(position 1: waiting for this agent's running job\)/);
    expect(second.stdout).toMatch(/pc1\s+pc1-\S+.*\bok\b/);
    const b = backupsOf(await jobs(ctl), 'pc1').slice(-2);
    expect(b.map((j) => [j.status, j.trigger])).toEqual([
      ['succeeded', 'manual'],
      ['succeeded', 'manual'],
    ]);
    expect(b[1]!.startedAt).toBeGreaterThanOrEqual(b[0]!.endedAt!);
  }, 300_000);
});
