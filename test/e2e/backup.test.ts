import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoLeftovers, cleanupAll, requireTools } from '../harness/index.js';
import { listItems, startClient, startController, type Client, type Controller } from './fixture.js';

interface Job {
  agent: string;
  archive?: string;
  status: string;
  code?: string;
  reason?: string;
  stats?: { nfiles?: number };
}

async function backup(ctl: Controller, args: string[]): Promise<{ exitCode: number; jobs: Job[]; stderr: string }> {
  const r = await ctl.cli(['backup', ...args, '--json'], 300_000);
  let jobs: Job[] = [];
  try {
    jobs = JSON.parse(r.stdout) as Job[];
  } catch {
    /* leave empty: the assertion shows stderr */
  }
  return { exitCode: r.exitCode, jobs, stderr: r.stderr };
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
});
