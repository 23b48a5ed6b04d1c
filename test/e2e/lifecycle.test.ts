import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoLeftovers, cleanupAll, requireTools, waitFor, type HostSubprocess } from '../harness/index.js';
import {
  agentsJson,
  backup,
  jobLeftovers,
  manyFiles,
  pidsMatching,
  serverBorg,
  sftpSocket,
  signalAll,
  sftpSessions,
  startClient,
  startController,
  waitForAgent,
  type Client,
  type Controller,
  logLines,
} from './fixture.js';

/**
 * A plain kill(2), as systemd sends it: execa's own kill() follows a SIGTERM
 * with a SIGKILL 5 s later, which would cut every grace period short.
 */
function kill(proc: HostSubprocess, sig: NodeJS.Signals): void {
  process.kill(proc.pid!, sig);
}

async function waitForBorg(ctl: Controller, agent: string): Promise<void> {
  await waitFor(`borg create for ${agent}`, () => pidsMatching('borg', 'create', `${ctl.state}/repos/${agent}::`).length > 0, {
    timeoutMs: 30_000,
    intervalMs: 50,
  });
}

async function archives(ctl: Controller, agent: string): Promise<string[]> {
  const r = await serverBorg(ctl, agent, ['list', '--consider-checkpoints', '--short', 'REPO']);
  expect(r.exitCode, r.stderr).toBe(0);
  return r.stdout.split('\n').filter(Boolean);
}

async function noLeftovers(ctl: Controller): Promise<void> {
  await waitFor('job processes and mounts gone', () => jobLeftovers(ctl).length === 0, { timeoutMs: 10_000 }).catch(() => undefined);
  expect(jobLeftovers(ctl)).toEqual([]);
}

describe('lifecycle: SIGTERM and SIGHUP', () => {
  let ctl: Controller;
  let c1: Client;
  let ctlLog: Array<Record<string, unknown>>;

  beforeAll(async () => {
    requireTools();
    ctl = await startController();
    ctlLog = logLines(ctl.proc);
    c1 = await startClient(ctl, 'pc1');
    c1.host.writeFiles(manyFiles(3000));
  }, 120_000);

  afterAll(async () => {
    await cleanupAll();
    assertNoLeftovers();
  });

  it('SIGTERM on the agent: its tunnel ends, the controller sees a clean close (1001), the agent exits 0', async () => {
    const port = (await agentsJson(ctl)).find((a) => a.name === 'pc1') as unknown as { port: number };
    const run = backup(ctl, ['pc1']);
    await waitForBorg(ctl, 'pc1');
    // Hold the backup mid-way, its tunnel open.
    const stalled = sftpSessions(c1);
    signalAll(stalled, 'SIGSTOP');
    try {
      const ssh = pidsMatching('ssh', '-R', `127.0.0.1:${port.port}:${sftpSocket(c1)}`);
      expect(ssh.length).toBe(1);
      const agent = c1.agent!;
      const t0 = Date.now();
      kill(agent, 'SIGTERM');
      const done = await agent;
      const took = Date.now() - t0;
      expect(done.exitCode, `${String(done.signal)} ${String(done.stdout).slice(-3000)} ${String(done.stderr)}`).toBe(0);
      console.log(`agent stopped in ${took} ms`);
      expect(took).toBeLessThan(5_000);
      expect(pidsMatching('ssh', '-R', `127.0.0.1:${port.port}:${sftpSocket(c1)}`)).toEqual([]);
      expect(String(done.stdout)).toMatch(/"tunnel closed on order"/);
      await waitFor('controller logs the disconnect', () => ctlLog.some((l) => l['msg'] === 'agent disconnected'), { timeoutMs: 10_000 });
      const gone = ctlLog.find((l) => l['msg'] === 'agent disconnected');
      expect(gone).toMatchObject({ agentId: 'pc1', reason: 'connection closed (1001 agent stopping)' });
    } finally {
      signalAll(stalled, 'SIGCONT');
    }
    const r = await run;
    expect(r.jobs[0], r.stdout + r.stderr).toMatchObject({ agent: 'pc1', status: 'failed' });
    await noLeftovers(ctl);
    await c1.startAgent();
  }, 120_000);

  it('SIGHUP: a broken config.json is refused with its code and the daemon runs on; a good one is applied', async () => {
    ctl.configure({ stopGrace: 'soon' });
    kill(ctl.proc, 'SIGHUP');
    await waitFor('reload refused', () => ctlLog.some((l) => l['msg'] === 'config not reloaded: keeping the running config'), {
      timeoutMs: 10_000,
    });
    expect(ctlLog.find((l) => l['msg'] === 'config not reloaded: keeping the running config')).toMatchObject({
      code: 'E_CONFIG_INVALID',
      reason: expect.stringMatching(/stopGrace/),
    });
    expect(ctl.proc.exitCode).toBeNull();
    expect((await ctl.cli(['agents'])).exitCode).toBe(0);
    // Not JSON at all (a half-saved edit): the same.
    const file = join(ctl.state, 'config.json');
    const saved = readFileSync(file, 'utf8');
    writeFileSync(file, saved.slice(0, saved.length / 2));
    const torn = ctlLog.length;
    kill(ctl.proc, 'SIGHUP');
    await waitFor('reload refused', () => ctlLog.slice(torn).some((l) => l['msg'] === 'config not reloaded: keeping the running config'), {
      timeoutMs: 10_000,
    });
    expect(ctlLog.slice(torn).find((l) => l['msg'] === 'config not reloaded: keeping the running config')).toMatchObject({
      code: 'E_CONFIG_INVALID',
      reason: expect.stringMatching(/not valid JSON/),
    });
    writeFileSync(file, saved);
    expect(ctl.proc.exitCode).toBeNull();
    expect((await ctl.cli(['agents'])).exitCode).toBe(0);
    ctl.configure({ stopGrace: '2s' });
    const good = ctlLog.length;
    kill(ctl.proc, 'SIGHUP');
    await waitFor('reloaded', () => ctlLog.slice(good).some((l) => l['msg'] === 'config reloaded'), { timeoutMs: 10_000 });
    expect(ctlLog.slice(good).find((l) => l['msg'] === 'config reloaded')).toMatchObject({ changed: ['stopGrace'], needRestart: [] });
    // A key bound at start is said to need a restart.
    ctl.configure({ parallel: 2 });
    const again = ctlLog.length;
    kill(ctl.proc, 'SIGHUP');
    await waitFor('reloaded', () => ctlLog.slice(again).some((l) => String(l['msg']).startsWith('config reloaded')), { timeoutMs: 10_000 });
    expect(ctlLog.slice(again).find((l) => String(l['msg']).startsWith('config reloaded'))).toMatchObject({
      changed: ['parallel'],
      needRestart: ['parallel'],
    });
  }, 60_000);

  it('SIGTERM on the controller, grace (2s, from the reload) shorter than the backup: cancelled, cleaned up, exit 0', async () => {
    const run = backup(ctl, ['pc1']);
    await waitForBorg(ctl, 'pc1');
    const stalled = sftpSessions(c1);
    signalAll(stalled, 'SIGSTOP');
    try {
      const t0 = Date.now();
      kill(ctl.proc, 'SIGTERM');
      const r = await run;
      expect(r.jobs[0], r.stdout + r.stderr).toMatchObject({ agent: 'pc1', status: 'failed', code: 'E_JOB_CANCELLED' });
      const done = await ctl.proc;
      const took = Date.now() - t0;
      expect(done.exitCode, String(done.stderr)).toBe(0);
      console.log(`controller stopped in ${took} ms (grace 2000 ms)`);
      expect(took).toBeGreaterThanOrEqual(2_000);
      expect(took).toBeLessThan(2_000 + 20_000);
      expect(ctlLog.find((l) => l['msg'] === 'shutting down')).toMatchObject({ signal: 'SIGTERM', graceMs: 2_000 });
    } finally {
      signalAll(stalled, 'SIGCONT');
    }
    await noLeftovers(ctl);
    expect(await archives(ctl, 'pc1')).toEqual([]);
  }, 120_000);

  it('SIGTERM on the controller, grace longer than the backup: no new job is taken, the running one succeeds, exit 0', async () => {
    ctl.configure({ stopGrace: '5m', parallel: 4 });
    await ctl.start();
    ctlLog = logLines(ctl.proc);
    await waitForAgent(ctl, 'pc1', true);
    const run = backup(ctl, ['pc1']);
    await waitForBorg(ctl, 'pc1');
    const stalled = sftpSessions(c1);
    signalAll(stalled, 'SIGSTOP');
    try {
      kill(ctl.proc, 'SIGTERM');
      await waitFor('controller stopping', () => ctlLog.some((l) => l['msg'] === 'shutting down'), { timeoutMs: 10_000 });
      expect(ctlLog.find((l) => l['msg'] === 'shutting down')).toMatchObject({ graceMs: 300_000 });
      // A second SIGTERM (an impatient admin) neither kills it nor cuts the grace.
      kill(ctl.proc, 'SIGTERM');
      const refused = await ctl.cli(['backup', 'pc1']);
      expect(refused.exitCode).not.toBe(0);
      expect(refused.stderr).toMatch(/stopping/);
    } finally {
      signalAll(stalled, 'SIGCONT');
    }
    const r = await run;
    expect(r.jobs[0], r.stdout + r.stderr).toMatchObject({ agent: 'pc1', status: 'succeeded' });
    const done = await ctl.proc;
    expect(done.exitCode, String(done.stderr)).toBe(0);
    expect(await archives(ctl, 'pc1')).toEqual([r.jobs[0]!.archive]);
    await noLeftovers(ctl);
  }, 120_000);
});
