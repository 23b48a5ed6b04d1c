import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { assertNoLeftovers, cleanupAll, requireTools } from '../harness/index.js';
import { backup, listItems, startClient, startController, type Client, type Controller } from './fixture.js';

/** Gives every regular file under root a distinct mtime an hour ago (ctime over sshfs reads as mtime). */
function ageTree(root: string): void {
  let t = Date.now() / 1000 - 3600;
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) utimesSync(p, t, (t += 1));
    }
  };
  walk(root);
}

describe('pulled backups', () => {
  let ctl: Controller;
  let c1: Client;

  beforeAll(async () => {
    requireTools();
    ctl = await startController();
    c1 = await startClient(ctl, 'pc1');
    c1.host.writeFiles({
      'data/alice.txt': { content: 'alice owns this\n', uid: 1000, gid: 1000, mode: 0o640 },
      'data/bob/notes.txt': { content: 'bob\n', uid: 1001, gid: 1001 },
      'data/carol.bin': { content: new Uint8Array(70_000).fill(7), uid: 1002, gid: 1002 },
      'data/abs-link': { symlink: '/etc/passwd' },
      'data/rel-link': { symlink: '../etc/group' },
      'data/bob/up-link': { symlink: '../../data/alice.txt' },
    });
  }, 120_000);

  afterAll(async () => {
    await cleanupAll();
    assertNoLeftovers();
  });

  it("records the client's user and group names and ids, and links with their exact targets", async () => {
    const r = await backup(ctl, ['pc1']);
    expect(r.jobs[0], JSON.stringify(r.jobs[0]) + r.stderr).toMatchObject({ agent: 'pc1', status: 'succeeded' });
    expect(r.exitCode).toBe(0);
    const items = await listItems(ctl, 'pc1', r.jobs[0]!.archive!);
    const byPath = new Map(items.map((i) => [i.path, i]));
    expect(byPath.get('data/alice.txt')).toMatchObject({ user: 'alice', group: 'alice', uid: 1000, gid: 1000 });
    expect(byPath.get('data/bob/notes.txt')).toMatchObject({ user: 'bob', uid: 1001 });
    expect(byPath.get('data/carol.bin')).toMatchObject({ user: 'carol', group: 'staff', uid: 1002, gid: 1002 });
    expect(byPath.get('data/abs-link')).toMatchObject({ type: 'l', linktarget: '/etc/passwd' });
    expect(byPath.get('data/rel-link')).toMatchObject({ type: 'l', linktarget: '../etc/group' });
    expect(byPath.get('data/bob/up-link')).toMatchObject({ type: 'l', linktarget: '../../data/alice.txt' });
  });

  it('shows the backup in the job history, filtered by kind and outcome', async () => {
    const r = await backup(ctl, ['pc1']);
    const job = r.jobs[0] as { id?: string; archive?: string; status: string };
    expect(job.status).toBe('succeeded');
    const listed = await ctl.cli(['jobs', '--kind', 'backup', '--outcome', 'succeeded', '--agent', 'pc1', '--json']);
    expect(listed.exitCode, listed.stderr).toBe(0);
    const jobs = JSON.parse(listed.stdout) as Array<{
      id: string;
      kind: string;
      status: string;
      archive?: string;
      stats?: { originalSize?: number };
    }>;
    expect(jobs[0]).toMatchObject({ id: job.id, kind: 'backup', status: 'succeeded', archive: job.archive });
    expect(jobs[0]!.stats!.originalSize).toBeGreaterThan(70_000);
    expect(jobs.every((j) => j.kind === 'backup' && j.status === 'succeeded')).toBe(true);
    const table = await ctl.cli(['jobs', '--kind', 'backup', '--outcome', 'succeeded']);
    expect(table.stdout.split('\n')[1]).toMatch(new RegExp(`\\s+pc1\\s+backup\\s+succeeded\\s+\\d.*\\s+-\\s+${job.id!}$`));
    // Nothing failed: the filter says so rather than showing the successes.
    expect((await ctl.cli(['jobs', '--outcome', 'failed'])).stdout.trim()).toBe('no jobs match');
    // A bad filter is the user's mistake: exit 2 and the command's usage, without asking the daemon.
    const bad = await ctl.cli(['jobs', '--kind', 'backups']);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/--kind must be one of backup, restore, prune, compact, check, got 'backups'/);
  });

  it('reads no file contents again when nothing changed', async () => {
    // borg 1.2 keeps no files-cache entry for the files carrying the newest
    // ctime it read in a run (its guard against same-second changes), so those
    // are read again next time. Give every file a distinct, older time: then
    // exactly one file, the newest, is read again.
    ageTree(c1.host.root);
    const first = await backup(ctl, ['pc1']);
    expect(first.jobs[0]?.status).toBe('succeeded');
    const second = await backup(ctl, ['pc1']);
    expect(second.jobs[0], JSON.stringify(second.jobs[0])).toMatchObject({ status: 'succeeded' });
    expect(second.jobs[0]!.stats, JSON.stringify(second.jobs[0])).toMatchObject({ changedFiles: 1, errorFiles: 0 });
    expect(second.jobs[0]!.stats!.nfiles).toBeGreaterThan(3);
    // A real change is seen as one.
    c1.host.writeFiles({ 'data/new.txt': 'new\n' });
    const third = await backup(ctl, ['pc1']);
    // new.txt, plus carol.bin, which is no longer the newest and is read once more.
    expect(third.jobs[0]!.stats).toMatchObject({ changedFiles: 2 });
  });

  it('gives identical item lists, names and ids in namespace and chroot isolation', async () => {
    const c2 = await startClient(ctl, 'pc2', { system: true });
    c2.host.writeFiles({
      'data/a.txt': { content: 'a\n', uid: 1000, gid: 1002 },
      'data/link': { symlink: '/usr/bin/borg' },
    });
    ctl.configure({ agents: { pc2: { exclude: ['usr'] } } });
    const ns = await backup(ctl, ['pc2']);
    expect(ns.jobs[0], JSON.stringify(ns.jobs[0])).toMatchObject({ status: 'succeeded' });
    expect(ns.stderr).not.toContain('chroot isolation');
    ctl.configure({ agents: { pc2: { exclude: ['usr'], isolation: 'chroot' } } });
    const ch = await backup(ctl, ['pc2']);
    expect(ch.jobs[0], JSON.stringify(ch.jobs[0])).toMatchObject({ status: 'succeeded' });
    // Said plainly, in one line, before the job runs.
    expect(ch.stderr.split('\n').filter((l) => l.includes('chroot isolation'))).toEqual([
      "warning: pc2: chroot isolation runs the client's own borg as root on this server: use it only for clients you trust as much as the server",
    ]);
    const a = await listItems(ctl, 'pc2', ns.jobs[0]!.archive!);
    const b = await listItems(ctl, 'pc2', ch.jobs[0]!.archive!);
    const view = (items: typeof a) =>
      items.map((i) => `${i.path} ${i.type} ${i.mode} ${i.mtime} ${i.user}:${i.group} ${i.uid}:${i.gid} ${i.linktarget}`).sort();
    expect(view(b)).toEqual(view(a));
    expect(a.some((i) => i.path.startsWith('usr/'))).toBe(false);
    expect(a.find((i) => i.path === 'data/a.txt')).toMatchObject({ user: 'alice', group: 'staff' });
  }, 240_000);
});
