import { randomBytes } from 'node:crypto';
import { readFileSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoLeftovers, cleanupAll, requireTools, waitFor } from '../harness/index.js';
import {
  backup,
  jobLeftovers,
  listItems,
  manyFiles,
  pidsMatching,
  serverBorg,
  signalAll,
  sftpSessions,
  startClient,
  startController,
  type Client,
  type Controller,
} from './fixture.js';

/** Every archive of an agent, checkpoints included, straight from borg. */
async function allArchives(ctl: Controller, agent: string): Promise<string[]> {
  const r = await serverBorg(ctl, agent, ['list', '--consider-checkpoints', '--short', 'REPO']);
  expect(r.exitCode, r.stderr).toBe(0);
  return r.stdout.split('\n').filter(Boolean);
}

async function noLeftovers(ctl: Controller): Promise<void> {
  await waitFor('job processes and mounts gone', () => jobLeftovers(ctl).length === 0, { timeoutMs: 10_000 }).catch(() => undefined);
  expect(jobLeftovers(ctl)).toEqual([]);
}

/** Lines the agent logged that say a tunnel opened. */
function tunnelOpens(c: Client): () => number {
  let n = 0;
  c.agent!.stdout.on('data', (b: Buffer) => {
    n += b
      .toString()
      .split('\n')
      .filter((l) => l.includes('"tunnel open"')).length;
  });
  return () => n;
}

describe('bounded jobs and disks', () => {
  let ctl: Controller;
  let c1: Client;
  let c2: Client;

  beforeAll(async () => {
    requireTools();
    ctl = await startController();
    c1 = await startClient(ctl, 'pc1');
    c1.host.writeFiles(manyFiles(3000));
    c2 = await startClient(ctl, 'pc2');
    // Incompressible: borg cannot squeeze it under a quota.
    c2.host.writeFiles({ 'data/random.bin': randomBytes(24 * 2 ** 20) });
  }, 120_000);

  afterAll(async () => {
    await cleanupAll();
    assertNoLeftovers();
  });

  it('cancels a backup whose client stalls at the time limit, with full cleanup; the next backup works', async () => {
    ctl.configure({ agents: { pc1: { timeLimit: '20s' } } });
    const started = Date.now();
    const run = backup(ctl, ['pc1']);
    // This controller's borg (the machine is shared: other tests back up a 'pc1' too).
    await waitFor('borg create for pc1', () => pidsMatching('borg', 'create', `${ctl.state}/repos/pc1::`).length > 0, {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    // The client's sftp-server stops answering, mid-file, with its connection open: a stalled client.
    const stalled = sftpSessions(c1);
    expect(stalled.length).toBeGreaterThan(0);
    signalAll(stalled, 'SIGSTOP');
    try {
      const r = await run;
      const took = Date.now() - started;
      expect(r.exitCode).not.toBe(0);
      expect(r.jobs[0], r.stdout + r.stderr).toMatchObject({
        agent: 'pc1',
        status: 'failed',
        code: 'E_JOB_TIME_LIMIT',
        reason: expect.stringMatching(/^cancelled after the time limit of 20s \(config agents\.pc1\.timeLimit\)/),
      });
      // Not before the limit; after it, only the cleanup (kill, unmount, close the tunnel, look for an archive to drop).
      const job = r.jobs[0] as unknown as { startedAt: number; endedAt: number };
      expect(job.endedAt - job.startedAt).toBeGreaterThanOrEqual(20_000);
      expect(took).toBeLessThan(20_000 + 20_000);
    } finally {
      signalAll(stalled, 'SIGCONT');
    }
    expect(await allArchives(ctl, 'pc1')).toEqual([]);
    await noLeftovers(ctl);
    ctl.configure({ agents: {} });
    const again = await backup(ctl, ['pc1']);
    expect(again.jobs[0], again.stdout + again.stderr).toMatchObject({ status: 'succeeded' });
    expect(await allArchives(ctl, 'pc1')).toEqual([again.jobs[0]!.archive]);
    await noLeftovers(ctl);
  }, 180_000);

  it('fails a backup that would pass the quota, keeps no archive, and succeeds once the quota is raised', async () => {
    ctl.configure({ agents: { pc2: { quota: '10M' } } });
    const r = await backup(ctl, ['pc2']);
    expect(r.jobs[0], r.stdout + r.stderr).toMatchObject({
      agent: 'pc2',
      status: 'failed',
      code: 'E_JOB_QUOTA',
      reason: expect.stringMatching(/quota of 10 MiB \(config agents\.pc2\.quota\)/),
    });
    expect(r.jobs[0]!.reason).not.toContain('\n');
    expect(await allArchives(ctl, 'pc2')).toEqual([]);
    expect(readFileSync(join(ctl.state, 'repos', 'pc2', 'config'), 'utf8')).toMatch(/^storage_quota = 10485760$/m);
    await noLeftovers(ctl);
    // A config edit applies to the next job.
    ctl.configure({ agents: { pc2: { quota: '1G' } } });
    const ok = await backup(ctl, ['pc2']);
    expect(ok.jobs[0], ok.stdout + ok.stderr).toMatchObject({ status: 'succeeded' });
    const items = await listItems(ctl, 'pc2', ok.jobs[0]!.archive!);
    expect(items.find((i) => i.path === 'data/random.bin')?.size).toBe(24 * 2 ** 20);
    expect(readFileSync(join(ctl.state, 'repos', 'pc2', 'config'), 'utf8')).toMatch(/^storage_quota = 1073741824$/m);
    // 'none' takes the quota off the repository again.
    ctl.configure({ agents: { pc2: { quota: 'none' } } });
    const none = await backup(ctl, ['pc2']);
    expect(none.jobs[0]?.status).toBe('succeeded');
    expect(readFileSync(join(ctl.state, 'repos', 'pc2', 'config'), 'utf8')).not.toMatch(/storage_quota/);
    await noLeftovers(ctl);
  }, 180_000);

  it('starts no backup while the repositories are below the free-space floor', async () => {
    const s = statfsSync(join(ctl.state, 'repos'));
    const opens = tunnelOpens(c2);
    ctl.configure({ agents: {}, minFreeSpace: s.bavail * s.bsize + 2 ** 40 });
    const r = await backup(ctl, ['pc2']);
    expect(r.jobs[0], r.stdout + r.stderr).toMatchObject({
      agent: 'pc2',
      status: 'failed',
      code: 'E_JOB_DISK_LOW',
      reason: expect.stringMatching(/^only .* free on .*\/repos, below the floor of .* TiB \(config minFreeSpace\)/),
    });
    expect(r.jobs[0]!.archive).toBeUndefined();
    // Refused before any tunnel: the agent was never asked to open one.
    expect(opens()).toBe(0);
    const human = await ctl.cli(['backup', 'pc2']);
    expect(human.exitCode).not.toBe(0);
    expect(human.stdout + human.stderr).toMatch(/below the floor/);
    ctl.configure({ minFreeSpace: '1M' });
    const ok = await backup(ctl, ['pc2']);
    expect(ok.jobs[0]?.status).toBe('succeeded');
    // The same observation sees a tunnel that did open.
    await waitFor('the agent logged its tunnel', () => opens() > 0, { timeoutMs: 5_000 });
    await noLeftovers(ctl);
  }, 180_000);

  it('cancels a restore that stalls at the time limit, and ends its borg', async () => {
    const archive = (await allArchives(ctl, 'pc2')).at(-1)!;
    ctl.configure({ agents: { pc2: { timeLimit: '15s' } } });
    const target = join(c2.host.dir, 'restore-stalled');
    const started = Date.now();
    const run = ctl.cli(['restore', 'pc2', archive, '--target', target], 120_000);
    // The stream stalls: borg export-tar stops producing (the agent, which unpacks in its own
    // process now, stays connected and idle: only the time limit can end this job).
    let borgs: number[] = [];
    await waitFor('export-tar running', () => (borgs = pidsMatching('borg', 'export-tar', ctl.state)).length > 0, {
      timeoutMs: 30_000,
      intervalMs: 10,
    });
    signalAll(borgs, 'SIGSTOP');
    try {
      const r = await run;
      expect(r.exitCode).not.toBe(0);
      expect(Date.now() - started).toBeLessThan(15_000 + 20_000);
      const jobs = JSON.parse((await ctl.cli(['jobs', '--json'])).stdout) as Array<{
        kind: string;
        status: string;
        code?: string;
        reason?: string;
        startedAt: number;
        endedAt: number;
      }>;
      expect(jobs[0]!.endedAt - jobs[0]!.startedAt).toBeGreaterThanOrEqual(15_000);
      expect(jobs[0]).toMatchObject({
        kind: 'restore',
        status: 'failed',
        code: 'E_JOB_TIME_LIMIT',
        reason: 'cancelled after the time limit of 15s (config agents.pc2.timeLimit)',
      });
    } finally {
      signalAll(borgs, 'SIGCONT');
    }
    await waitFor('borg gone', () => pidsMatching('borg', 'export-tar', ctl.state).length === 0, { timeoutMs: 15_000 });
    ctl.configure({ agents: {} });
  }, 120_000);
});
