import { existsSync, lchownSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoLeftovers, cleanupAll, requireTools } from '../harness/index.js';
import { AGENT, backup, startClient, startController, type Client, type Controller } from './fixture.js';

/**
 * The client decides what a controller may write (issue 7, item 3): a real
 * agent whose restore policy is changed while it runs, a real controller,
 * borg and tar. The controller is the peer under suspicion here.
 */
describe('the client restore policy', () => {
  let ctl: Controller;
  let c1: Client;
  let archive: string;
  let agentState: string;
  let area: string;

  beforeAll(async () => {
    requireTools();
    ctl = await startController();
    c1 = await startClient(ctl, 'pc1');
    agentState = join(c1.host.dir, 'agent-state');
    area = join(c1.host.dir, 'restore-area');
    c1.host.writeFiles({
      'data/alice/report.txt': { content: 'quarterly\n', uid: 1000, gid: 1000, mode: 0o640 },
      'data/bob/notes.txt': { content: 'notes\n', uid: 1001, gid: 1001 },
    });
    const r = await backup(ctl, ['pc1']);
    expect(r.jobs[0], r.stdout + r.stderr).toMatchObject({ status: 'succeeded' });
    archive = r.jobs[0]!.archive!;
  }, 120_000);

  afterAll(async () => {
    await cleanupAll();
    assertNoLeftovers();
  });

  const agentCli = async (args: string[]) => {
    const r = await c1.host.exec(['node', AGENT, ...args, '--state-dir', agentState], { reject: false });
    return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
  };
  const restore = (target: string) => ctl.cli(['restore', 'pc1', archive, 'data/alice', '--target', target], 300_000);
  interface StatusRestore {
    result: string;
    refused: boolean;
    target: string;
    archive?: string;
    paths?: string[];
    reason?: string;
    bytes: number;
  }
  const status = async () => {
    const r = await agentCli(['status', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { restorePolicy: unknown; restores: StatusRestore[] };
  };
  const lastJob = async () => {
    const jobs = await ctl.cli(['jobs', '--json']);
    return (JSON.parse(jobs.stdout) as Array<{ kind: string; status: string; code?: string; reason?: string }>)[0];
  };

  it('defaults to anywhere', async () => {
    const r = await agentCli(['restores']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('anywhere');
    expect((await status()).restorePolicy).toBe('anywhere');
  });

  it('restores into DIR once the running agent is limited to it', async () => {
    const set = await agentCli(['restores', area]);
    expect(set.exitCode, set.stderr).toBe(0);
    expect(set.stdout.trim()).toBe(area);
    const r = await restore(join(area, 'pc1'));
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(readFileSync(join(area, 'pc1', 'data/alice/report.txt'), 'utf8')).toBe('quarterly\n');
    const s = await status();
    expect(s.restorePolicy).toEqual([area]);
    expect(s.restores[0]).toMatchObject({ result: 'ok', refused: false, target: join(area, 'pc1'), archive, paths: ['data/alice'] });
    expect(s.restores[0]!.bytes).toBeGreaterThan(0);
  });

  it('refuses a target elsewhere in one line, exit 1, writes nothing, and the client records it', async () => {
    const elsewhere = join(c1.host.dir, 'elsewhere');
    const r = await restore(elsewhere);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `^restore refused by pc1's restore policy \\(restores only into ${area}: ${elsewhere} is outside ${area}\\); nothing was sent \\(job [^)]+\\)$`,
      ),
    );
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(elsewhere)).toBe(false);
    expect(await lastJob()).toMatchObject({ kind: 'restore', status: 'failed', code: 'E_RESTORE_REFUSED' });
    const s = await status();
    expect(s.restores[0]).toMatchObject({ result: 'refused', refused: true, target: elsewhere, archive });
    const text = await agentCli(['status']);
    expect(text.stdout).toMatch(new RegExp(`restore policy: restores only into ${area}`));
    expect(text.stdout).toMatch(new RegExp(`REFUSED  -> ${elsewhere}`));
  });

  it("refuses '..' out of DIR and a user's symlink below DIR, writing nothing through either", async () => {
    const etc = join(c1.host.root, 'etc');
    const etcBefore = readdirSync(etc).sort();
    // An honest controller refuses '..' itself; a hostile one that sends it is refused by the
    // agent (orders.test.ts). Either way nothing lands outside DIR.
    const dotdot = await restore(`${area}/../escaped`);
    expect(dotdot.exitCode).not.toBe(0);
    expect(existsSync(join(c1.host.dir, 'escaped'))).toBe(false);
    mkdirSync(join(area, 'home'), { recursive: true });
    symlinkSync(etc, join(area, 'home', 'docs'));
    lchownSync(join(area, 'home', 'docs'), 1000, 1000);
    const link = await restore(join(area, 'home', 'docs'));
    expect(link.exitCode).toBe(1);
    expect(link.stderr).toMatch(/^restore refused by pc1's restore policy .*symbolic link/);
    expect(readdirSync(etc).sort()).toEqual(etcBefore);
    expect((await status()).restores.slice(0, 2).map((x) => x.result)).toEqual(['refused', 'refused']);
  });

  it("'agent restores off' refuses everything, even into DIR", async () => {
    expect((await agentCli(['restores', 'off'])).exitCode).toBe(0);
    const target = join(area, 'after-off');
    const r = await restore(target);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^restore refused by pc1's restore policy \(restores off: this client accepts no restores\)/);
    expect(existsSync(target)).toBe(false);
    expect((await status()).restores[0]).toMatchObject({ result: 'refused', target });
  });

  it("switching back to 'anywhere' works without restarting the agent", async () => {
    const pid = c1.agent!.pid;
    expect((await agentCli(['restores', 'anywhere'])).exitCode).toBe(0);
    const elsewhere = join(c1.host.dir, 'elsewhere');
    const r = await restore(elsewhere);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(readFileSync(join(elsewhere, 'data/alice/report.txt'), 'utf8')).toBe('quarterly\n');
    expect(c1.agent!.pid).toBe(pid);
    expect(c1.agent!.exitCode).toBeNull();
    expect((await status()).restores[0]).toMatchObject({ result: 'ok', target: elsewhere });
  });

  it('enroll --restores sets the policy from the start; a bad one enrolls nothing', async () => {
    const bad = await c1.host.exec(
      ['node', AGENT, 'enroll', 'bp1.whatever', '--restores', 'srv', '--state-dir', join(c1.host.dir, 'never')],
      { reject: false },
    );
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/^agent: --restores must be anywhere, off or DIR/);
    expect(existsSync(join(c1.host.dir, 'never'))).toBe(false);
    const c2 = await startClient(ctl, 'pc2', { enrollArgs: ['--restores', '/srv/restore,/home/restore'] });
    const r = await c2.host.exec(['node', AGENT, 'status', '--json', '--state-dir', join(c2.host.dir, 'agent-state')], { reject: false });
    expect(JSON.parse(r.stdout)).toMatchObject({ name: 'pc2', restorePolicy: ['/srv/restore', '/home/restore'], restores: [] });
  });

  it('refuses a bad policy on the command line without changing the current one', async () => {
    for (const bad of ['relative/dir', '/srv/../etc', '']) {
      const r = await agentCli(['restores', bad]);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toMatch(/^agent: the policy must be anywhere, off or DIR/);
    }
    expect((await agentCli(['restores'])).stdout.trim()).toBe('anywhere');
  });
});
