import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoLeftovers, cleanupAll, requireTools } from '../harness/index.js';
import { backup, listItems, startClient, startController, type Client, type Controller } from './fixture.js';

/**
 * A client whose root controls what its agent reports and what its sshd
 * serves. Seen on the code before this test: a passwd giving root the home
 * `.` (or any path into the sshfs mount) made the server's borg, a Python
 * program run as root with HOME unset, load the client's user site-packages
 * and run a `.pth` file from the client's tree as root on the server.
 */

/** Where Python would look for a user site dir under a home in the mount (several versions, whatever the server runs). */
const PY_VERSIONS = ['3.9', '3.10', '3.11', '3.12', '3.13'];

function clientPasswd(rootHome: string): string {
  return [
    `root:x:0:0:root:${rootHome}:/bin/sh`,
    'sshd:x:102:65534::/run/sshd:/usr/sbin/nologin',
    'alice:x:1000:1000:Alice:/home/alice:/bin/bash',
  ].join('\n');
}
const GROUP = ['root:x:0:', 'nogroup:x:65534:', 'alice:x:1000:'].join('\n');

describe('a hostile client', () => {
  let ctl: Controller;
  let c: Client;
  // On the server's file system: the job runs in the host's mount namespace
  // (a private copy of it), where /tmp is the host's /tmp.
  const marker = `/tmp/borgpull-pwned-${randomBytes(6).toString('hex')}`;
  const payload = `import os; open(${JSON.stringify(marker)}, 'w').write('pwned')\n`;

  beforeAll(async () => {
    requireTools();
    ctl = await startController();
    c = await startClient(ctl, 'evil', { passwd: clientPasswd('.'), group: GROUP });
    const tree: Record<string, { content: string; uid?: number; gid?: number; mode?: number }> = {
      'data/alice.txt': { content: 'alice owns this\n', uid: 1000, gid: 1000, mode: 0o640 },
    };
    for (const v of PY_VERSIONS) {
      tree[`.local/lib/python${v}/site-packages/zz.pth`] = { content: payload };
      tree[`.local/lib/python${v}/site-packages/usercustomize.py`] = { content: payload };
    }
    c.host.writeFiles(tree);
  }, 120_000);

  afterAll(async () => {
    rmSync(marker, { force: true });
    await cleanupAll();
    assertNoLeftovers();
  });

  /** Rewrites the client's /etc/passwd in place (the client host binds this very inode). */
  function setRootHome(home: string): void {
    writeFileSync(join(c.host.root, 'etc', 'passwd'), `${clientPasswd(home)}\n`);
  }

  async function backupRunsNoClientCode(): Promise<void> {
    rmSync(marker, { force: true });
    const r = await backup(ctl, ['evil']);
    expect(existsSync(marker), `client code ran on the server (${marker} exists)`).toBe(false);
    expect(r.jobs[0], JSON.stringify(r.jobs[0]) + r.stderr).toMatchObject({ agent: 'evil', status: 'succeeded' });
    const items = await listItems(ctl, 'evil', r.jobs[0]!.archive!);
    const byPath = new Map(items.map((i) => [i.path, i]));
    // The client's names are still what the archive records.
    expect(byPath.get('data/alice.txt')).toMatchObject({ user: 'alice', group: 'alice', uid: 1000, gid: 1000 });
    expect(byPath.get('.local/lib/python3.11/site-packages/zz.pth')).toMatchObject({ type: '-', user: 'root' });
  }

  it("runs no client code on the server when root's home is '.' (the sshfs mount)", async () => {
    setRootHome('.');
    await backupRunsNoClientCode();
  }, 180_000);

  it("runs no client code on the server when root's home is /proc/self/cwd", async () => {
    setRootHome('/proc/self/cwd');
    await backupRunsNoClientCode();
  }, 180_000);

  it("runs no client code on the server when root's home is the mountpoint's own path", async () => {
    setRootHome(join(ctl.state, 'mnt', 'evil'));
    await backupRunsNoClientCode();
  }, 180_000);

  it("backs up a client whose root entry the parser drops (uid '00'): uid 0 has no name, borg still succeeds", async () => {
    // glibc and the client's sshd read '00' as 0; the parser keeps canonical ids only,
    // so the passwd the job binds has no uid 0, and borg must not need one.
    writeFileSync(join(c.host.root, 'etc', 'passwd'), `${clientPasswd('/root').replace('root:x:0:0:', 'root:x:00:0:')}\n`);
    rmSync(marker, { force: true });
    const r = await backup(ctl, ['evil']);
    expect(r.jobs[0], JSON.stringify(r.jobs[0]) + r.stderr).toMatchObject({ agent: 'evil', status: 'succeeded' });
    const items = await listItems(ctl, 'evil', r.jobs[0]!.archive!);
    const byPath = new Map(items.map((i) => [i.path, i]));
    expect(byPath.get('data/alice.txt')).toMatchObject({ user: 'alice', uid: 1000 });
    expect(byPath.get('etc/passwd')).toMatchObject({ uid: 0, group: 'root', gid: 0 });
    // No name recorded for uid 0: borg lists the number.
    expect(String(byPath.get('etc/passwd')?.user)).toBe('0');
    expect(existsSync(marker)).toBe(false);
  }, 180_000);

  it('backs up hostile file names and planted links as plain data', async () => {
    setRootHome('/root');
    // Not UTF-8, control characters, a terminal escape: data, never arguments.
    const odd = join(c.host.root, 'data', 'odd');
    mkdirSync(odd);
    writeFileSync(Buffer.concat([Buffer.from(`${odd}/bad-`), Buffer.from([0xff, 0xfe]), Buffer.from('.txt')]), 'x\n');
    writeFileSync(join(odd, 'esc-\u001b]0;pwned\u0007-\n-name'), 'y\n');
    writeFileSync(join(odd, '--help'), 'z\n');
    c.host.writeFiles({
      borgrepo: { symlink: '/' },
      borgbase: { symlink: ctl.state },
      'data/to-state': { symlink: ctl.state },
    });
    rmSync(marker, { force: true });
    const r = await backup(ctl, ['evil']);
    expect(r.jobs[0], JSON.stringify(r.jobs[0]) + r.stderr).toMatchObject({ status: 'succeeded' });
    const items = await listItems(ctl, 'evil', r.jobs[0]!.archive!);
    const paths = items.map((i) => i.path);
    expect(paths).toContain('data/odd/--help');
    expect(paths).toContain('data/odd/esc-\u001b]0;pwned\u0007-\n-name');
    expect(items.find((i) => i.path === 'borgrepo')).toMatchObject({ type: 'l', linktarget: '/' });
    expect(items.find((i) => i.path === 'borgbase')).toMatchObject({ type: 'l', linktarget: ctl.state });
    // Nothing from the server's state dir was followed into the archive.
    expect(paths.filter((p) => p.startsWith('borgbase/') || p.startsWith('borgrepo/') || p.startsWith('data/to-state/'))).toEqual([]);
  }, 180_000);

  it("kept borg's cache, security data and temp files in this agent's own base dir, on the server", () => {
    const base = join(ctl.state, 'borg', 'evil');
    expect(statSync(base).mode & 0o777).toBe(0o700);
    expect(readdirSync(base).sort()).toEqual(['.cache', '.config', 'tmp']);
    expect(readdirSync(join(ctl.state, 'borg'))).toEqual(['evil']);
  });
});
