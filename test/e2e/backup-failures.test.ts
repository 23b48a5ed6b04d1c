import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoLeftovers, cleanupAll, requireTools, waitFor } from '../harness/index.js';
import {
  agentsJson,
  backup,
  jobLeftovers,
  listItems,
  manyFiles,
  pidsMatching,
  sftpSocket,
  startClient,
  startController,
  waitForAgent,
  type Client,
  type Controller,
} from './fixture.js';

async function archives(ctl: Controller, agent: string): Promise<string[]> {
  const r = await ctl.cli(['archives', agent, '--json']);
  expect(r.exitCode, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as Array<{ name: string }>).map((a) => a.name);
}

/** Waits until the agent's borg create has been running a moment. */
async function waitForBorg(ctl: Controller, agent: string): Promise<void> {
  await waitFor(`borg create for ${agent}`, () => pidsMatching('borg', 'create', `repos/${agent}::`).length > 0, {
    timeoutMs: 30_000,
    intervalMs: 50,
  });
}

async function noLeftovers(ctl: Controller): Promise<void> {
  await waitFor('job processes and mounts gone', () => jobLeftovers(ctl).length === 0, { timeoutMs: 10_000 }).catch(() => undefined);
  expect(jobLeftovers(ctl)).toEqual([]);
}

describe('backups that go wrong', () => {
  let ctl: Controller;
  let c1: Client;
  let c2: Client;

  beforeAll(async () => {
    requireTools();
    ctl = await startController();
    c1 = await startClient(ctl, 'pc1');
    c1.host.writeFiles(manyFiles(4000));
    c2 = await startClient(ctl, 'pc2', { system: true });
  }, 120_000);

  afterAll(async () => {
    await cleanupAll();
    assertNoLeftovers();
  });

  it('fails a backup whose tunnel is killed, and leaves no archive, mount or process', async () => {
    const port = (await agentsJson(ctl)).find((a) => a.name === 'pc1') as unknown as { port: number };
    const run = backup(ctl, ['pc1']);
    await waitForBorg(ctl, 'pc1');
    const ssh = pidsMatching('ssh', '-R', `127.0.0.1:${port.port}:${sftpSocket(c1)}`);
    expect(ssh.length).toBe(1);
    process.kill(ssh[0]!, 'SIGKILL');
    const r = await run;
    expect(r.exitCode).not.toBe(0);
    expect(r.jobs[0], r.stdout + r.stderr).toMatchObject({ agent: 'pc1', status: 'failed', code: 'E_JOB_CONNECTION_LOST' });
    expect(await archives(ctl, 'pc1')).toEqual([]);
    await noLeftovers(ctl);
    const jobs = await ctl.cli(['jobs']);
    expect(jobs.stdout).toMatch(/failed.*connection to the client was lost/);
  }, 120_000);

  it('survives kill -9 of the controller mid-backup: nothing left, and the next backup succeeds', async () => {
    const run = backup(ctl, ['pc1']);
    await waitForBorg(ctl, 'pc1');
    ctl.proc.kill('SIGKILL');
    const r = await run;
    expect(r.exitCode).not.toBe(0);
    await noLeftovers(ctl);
    await ctl.start();
    await waitForAgent(ctl, 'pc1', true);
    const again = await backup(ctl, ['pc1']);
    expect(again.jobs[0], again.stdout + again.stderr).toMatchObject({ status: 'succeeded' });
    expect(await archives(ctl, 'pc1')).toEqual([again.jobs[0]!.archive]);
    const jobs = await ctl.cli(['jobs', '--json']);
    expect(jobs.stdout).toContain('E_JOB_INTERRUPTED');
    await noLeftovers(ctl);
  }, 180_000);

  it("cannot be steered onto the server's disk by a client symlink where the recipe binds borgrepo", async () => {
    const canary = join(ctl.server.dir, 'canary');
    mkdirSync(canary);
    c2.host.writeFiles({ borgrepo: { symlink: canary }, borgbase: { symlink: canary }, 'data/x': 'x\n' });
    ctl.configure({ agents: { pc2: { exclude: ['usr'], isolation: 'chroot' } } });
    const r = await backup(ctl, ['pc2']);
    expect(r.jobs[0], r.stdout + r.stderr).toMatchObject({ status: 'succeeded' });
    expect(readdirSync(canary)).toEqual([]);
    await noLeftovers(ctl);
    // The namespace isolation archives the planted link as what it is.
    ctl.configure({ agents: { pc2: { exclude: ['usr'] } } });
    const ns = await backup(ctl, ['pc2']);
    expect(ns.jobs[0]?.status).toBe('succeeded');
    const items = await listItems(ctl, 'pc2', ns.jobs[0]!.archive!);
    expect(items.find((i) => i.path === 'borgrepo')).toMatchObject({ type: 'l', linktarget: canary });
    expect(readdirSync(canary)).toEqual([]);
  }, 180_000);

  it('backs up --all: one offline agent is reported, the others still run, exit status non-zero', async () => {
    c1.agent!.kill('SIGTERM');
    await waitForAgent(ctl, 'pc1', false);
    const r = await backup(ctl, ['--all']);
    expect(r.exitCode).toBe(1);
    const by = new Map(r.jobs.map((j) => [j.agent, j]));
    expect(by.get('pc1')).toMatchObject({ status: 'offline', code: 'E_AGENT_OFFLINE' });
    expect(by.get('pc2'), r.stdout).toMatchObject({ status: 'succeeded' });
    // The human summary says the same.
    const human = await ctl.cli(['backup', '--all']);
    expect(human.exitCode).toBe(1);
    expect(human.stdout).toMatch(/pc1.*OFFLINE/);
    expect(human.stdout).toMatch(/pc2.*ok/);
  }, 180_000);
});
