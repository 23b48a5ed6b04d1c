import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readdirSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { assertNoLeftovers, cleanupAll, requireTools, waitFor } from '../harness/index.js';
import { backup, serverBorg, startClient, startController, waitForAgent, type Client, type Controller } from './fixture.js';

interface Job {
  id: string;
  kind: string;
  agent: string;
  status: string;
  trigger?: string;
  code?: string;
  reason?: string;
  stats?: Record<string, number>;
}

const HOUR = 3600_000;
const DAY = 24 * HOUR;

/** borg's --timestamp form (UTC). */
const ts = (ms: number): string => new Date(ms).toISOString().slice(0, 19);

describe('retention and checks', () => {
  let ctl: Controller;
  let c1: Client;
  let seeds = 0;

  /** An archive with a chosen time, made straight in the agent's repository, holding data no other archive has. */
  async function seed(name: string, at: number): Promise<void> {
    const dir = join(ctl.server.dir, `seed-${seeds++}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'unique.bin'), randomBytes(300_000));
    const r = await serverBorg(ctl, 'pc1', ['create', '--timestamp', ts(at), `REPO::${name}`, dir]);
    expect(r.exitCode, r.stderr).toBe(0);
  }

  async function archives(): Promise<string[]> {
    const r = await serverBorg(ctl, 'pc1', ['list', '--short', 'REPO']);
    expect(r.exitCode, r.stderr).toBe(0);
    return r.stdout.split('\n').filter(Boolean).sort();
  }

  async function jobs(kind?: string): Promise<Job[]> {
    const r = await ctl.cli(['jobs', '--json', '--limit', '100', '--agent', 'pc1']);
    expect(r.exitCode, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as Job[]).filter((j) => kind === undefined || j.kind === kind);
  }

  beforeAll(async () => {
    requireTools();
    ctl = await startController();
    c1 = await startClient(ctl, 'pc1');
    c1.host.writeFiles({ 'data/a.txt': 'a\n' });
  }, 120_000);

  afterAll(async () => {
    await cleanupAll();
    assertNoLeftovers();
  });

  it('prunes after a good backup exactly what the keep rules say, then compacts, each a job of its own', async () => {
    // No retention in config.json (what init writes is "off"): nothing is pruned, no prune job.
    const first = await backup(ctl, ['pc1']);
    expect(first.jobs[0], first.stderr).toMatchObject({ status: 'succeeded' });
    expect(await jobs('prune')).toEqual([]);
    // And asking by hand is refused, not a prune with made-up rules.
    const off = await ctl.cli(['prune', 'pc1']);
    expect(off.exitCode).toBe(1);
    expect(off.stderr).toContain("retention is off for 'pc1'");

    const now = Date.now();
    const name = (ago: number): string => `pc1-${ts(now - ago)}`;
    await seed(name(30 * HOUR), now - 30 * HOUR); // within 2d
    await seed(name(3 * DAY), now - 3 * DAY); // daily #1
    await seed(name(5 * DAY), now - 5 * DAY); // daily #2
    await seed(name(40 * DAY), now - 40 * DAY); // monthly #1
    await seed(name(70 * DAY), now - 70 * DAY); // beyond every rule
    await seed(name(100 * DAY), now - 100 * DAY); // beyond every rule
    // Not names this controller makes: never pruned, whatever their age.
    await seed('pc1-before-upgrade', now - 300 * DAY);
    await seed('manual', now - 300 * DAY);
    ctl.configure({ retention: { keepWithin: '2d', daily: 2, monthly: 1 } });

    // The dry run shows the plan and changes nothing.
    const dry = await ctl.cli(['prune', 'pc1', '--dry-run']);
    expect(dry.exitCode, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(new RegExp(`${name(70 * DAY)}\\s+\\S.*\\s+delete`));
    expect(dry.stdout).toMatch(new RegExp(`${name(40 * DAY)}\\s+\\S.*\\s+keep\\s+monthly #1`));
    expect(dry.stdout).toContain('2 would be deleted, 5 kept (--keep-within=2d --keep-daily=2 --keep-monthly=1)');
    expect((await archives()).length).toBe(9);

    const second = await backup(ctl, ['pc1']);
    expect(second.jobs[0], second.stderr).toMatchObject({ status: 'succeeded' });
    expect(await archives()).toEqual(
      [
        first.jobs[0]!.archive!,
        second.jobs[0]!.archive!,
        name(30 * HOUR),
        name(3 * DAY),
        name(5 * DAY),
        name(40 * DAY),
        'pc1-before-upgrade',
        'manual',
      ].sort(),
    );
    const [prune] = await jobs('prune');
    expect(prune).toMatchObject({ trigger: 'follow-up', status: 'succeeded', stats: { archivesKept: 6, archivesDeleted: 2 } });
    const [compact] = await jobs('compact');
    expect(compact).toMatchObject({ trigger: 'follow-up', status: 'succeeded' });
    // The two deleted archives held 600 kB of data no other archive shares.
    expect(compact!.stats!['freedBytes']).toBeGreaterThan(500_000);
    // Order in the history: backup, then its prune, then compact.
    const all = await jobs();
    expect(all.slice(0, 3).map((j) => j.kind)).toEqual(['compact', 'prune', 'backup']);
  }, 300_000);

  it('does not prune a frozen agent (its last backup before this one failed), and resumes after two good backups in a row', async () => {
    c1.agent!.kill('SIGTERM');
    await waitForAgent(ctl, 'pc1', false);
    const offline = await backup(ctl, ['pc1']);
    expect(offline.jobs[0]).toMatchObject({ status: 'offline' });
    const old = `pc1-${ts(Date.now() - 200 * DAY)}`;
    await seed(old, Date.now() - 200 * DAY);
    await c1.startAgent();

    const dry = await ctl.cli(['prune', 'pc1', '--dry-run', '--json']);
    expect(dry.exitCode, dry.stderr).toBe(0);
    const plan = JSON.parse(dry.stdout) as { frozen?: string; archives: Array<{ archive: string; action: string }> };
    expect(plan.frozen).toMatch(/the newest backup .* did not succeed/);
    expect(plan.archives).toContainEqual(expect.objectContaining({ archive: old, action: 'prune' }));

    const good = await backup(ctl, ['pc1']);
    expect(good.jobs[0], good.stderr).toMatchObject({ status: 'succeeded' });
    expect(await archives()).toContain(old);
    const [skipped] = await jobs('prune');
    expect(skipped).toMatchObject({ trigger: 'follow-up', status: 'warning', code: 'E_PRUNE_FROZEN' });
    expect(skipped!.reason).toMatch(/^skipped: frozen: the backup before the newest .*offline E_AGENT_OFFLINE/);
    // By hand too: frozen is frozen.
    const manual = await ctl.cli(['prune', 'pc1']);
    expect(manual.exitCode, manual.stderr).toBe(0);
    expect(manual.stdout).toContain('not pruned: skipped: frozen');
    expect(await archives()).toContain(old);

    const again = await backup(ctl, ['pc1']);
    expect(again.jobs[0]).toMatchObject({ status: 'succeeded' });
    expect(await archives()).not.toContain(old);
    const [resumed] = await jobs('prune');
    expect(resumed).toMatchObject({ trigger: 'follow-up', status: 'succeeded', stats: { archivesDeleted: 1 } });
  }, 300_000);

  it('verify: a check succeeds on a good repository and fails, with a clear reason, on a damaged one', async () => {
    const ok = await ctl.cli(['verify', 'pc1', '--json']);
    expect(ok.exitCode, ok.stdout + ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual([
      expect.objectContaining({ kind: 'check', agent: 'pc1', status: 'succeeded', trigger: 'manual' }),
    ]);

    // Overwrite bytes in the middle of the biggest segment file: bit rot.
    const data = join(ctl.state, 'repos', 'pc1', 'data');
    const segments = readdirSync(data).flatMap((d) => readdirSync(join(data, d)).map((f) => join(data, d, f)));
    const biggest = segments.sort((a, b) => statSync(b).size - statSync(a).size)[0]!;
    const fd = openSync(biggest, 'r+');
    writeSync(fd, Buffer.alloc(64, 0xa5), 0, 64, Math.floor(statSync(biggest).size / 2));
    closeSync(fd);

    const bad = await ctl.cli(['verify', 'pc1']);
    expect(bad.exitCode, bad.stdout + bad.stderr).toBe(1);
    expect(bad.stdout).toMatch(/pc1.*FAILED: borg check found problems in the repository: .*(CRC|[Ii]ntegrity|segment)/);
    const [check] = await jobs('check');
    expect(check).toMatchObject({ kind: 'check', status: 'failed', code: 'E_CHECK_FAILED', trigger: 'manual' });
    expect(check!.reason).toMatch(/checksum mismatch|[Ii]ntegrity/);
    expect(check!.reason).not.toContain('Traceback');
  }, 300_000);

  it('the scheduler runs checks on checks.schedule, recorded with trigger schedule', async () => {
    ctl.configure({ checks: { schedule: 'every 3s' } });
    process.kill(ctl.proc.pid!, 'SIGHUP');
    const scheduled = await waitFor(
      'a scheduled check',
      async () => (await jobs('check')).find((j) => j.trigger === 'schedule' && j.status !== 'running'),
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    // The repository is still the one damaged above: the scheduled check says so as the manual one did.
    expect(scheduled).toMatchObject({ kind: 'check', agent: 'pc1', status: 'failed', code: 'E_CHECK_FAILED' });
    ctl.configure({ checks: { schedule: 'off' } });
    process.kill(ctl.proc.pid!, 'SIGHUP');
  }, 120_000);
});
