import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoLeftovers, cleanupAll, requireTools, waitFor, type FileSpec } from '../harness/index.js';
import {
  backup,
  jobLeftovers,
  pidsMatching,
  startClient,
  startController,
  waitForAgent,
  CLIENT_PASSWD,
  type Client,
  type Controller,
} from './fixture.js';

const BIG = randomBytes(3 * 1024 * 1024);

const TREE: Record<string, FileSpec> = {
  'data/alice/report.txt': { content: 'quarterly\n', uid: 1000, gid: 1000, mode: 0o640 },
  'data/alice/empty': { content: '', uid: 1000, gid: 1000 },
  'data/bob/deep/er/still/file.txt': { content: 'deep\n', uid: 1001, gid: 1001, mode: 0o600 },
  'data/carol/big.bin': { content: BIG, uid: 1002, gid: 1002 },
  'data/tools/suid-tool': { content: '#!/bin/sh\necho hi\n', uid: 1000, gid: 1000, mode: 0o4755 },
  'data/links/abs': { symlink: '/etc/hostname' },
  'data/links/rel': { symlink: '../alice/report.txt' },
  'data/links/dangling': { symlink: 'nowhere/at/all' },
};

interface Entry {
  type: 'file' | 'dir' | 'link';
  mode: number;
  uid: number;
  gid: number;
  sha?: string;
  target?: string;
}

/** Every entry under dir: type, mode, owner, content hash, link target. */
function snapshot(dir: string): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(dir, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const p = join(dir, r);
      const st = lstatSync(p);
      const base = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
      if (st.isSymbolicLink()) out.set(r, { type: 'link', ...base, mode: 0, target: readlinkSync(p) });
      else if (st.isDirectory()) {
        out.set(r, { type: 'dir', ...base });
        walk(r);
      } else out.set(r, { type: 'file', ...base, sha: createHash('sha256').update(readFileSync(p)).digest('hex') });
    }
  };
  walk('');
  return out;
}

describe('restores', () => {
  let ctl: Controller;
  let c1: Client;
  let archive: string;
  let original: Map<string, Entry>;

  beforeAll(async () => {
    requireTools();
    ctl = await startController();
    c1 = await startClient(ctl, 'pc1');
    c1.host.writeFiles(TREE);
    original = snapshot(join(c1.host.root, 'data'));
    const r = await backup(ctl, ['pc1']);
    expect(r.jobs[0], r.stdout + r.stderr).toMatchObject({ status: 'succeeded' });
    archive = r.jobs[0]!.archive!;
  }, 120_000);

  afterAll(async () => {
    await cleanupAll();
    assertNoLeftovers();
  });

  const restore = (args: string[]) => ctl.cli(['restore', 'pc1', archive, ...args], 300_000);
  const wipe = () => rmSync(join(c1.host.root, 'data'), { recursive: true, force: true });

  it('streams export-tar to the agent and restores every file, mode, owner and link (stream)', async () => {
    wipe();
    // Backups see the client's files under client.root (its agent was enrolled with
    // --sftp-root client.root), so a stream restore "in place" targets that path.
    // Only data/: the harness binds the client's etc/passwd into its namespace,
    // and tar replacing that file would leave the bind on the old one.
    const r = await restore(['data', '--target', c1.host.root]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/restored .* by stream .*verified by the agent/);
    expect(snapshot(join(c1.host.root, 'data'))).toEqual(original);
  });

  it('restores to another directory and leaves the original tree untouched', async () => {
    const before = snapshot(join(c1.host.root, 'data'));
    const elsewhere = join(c1.host.dir, 'restored-here');
    const r = await restore(['data/alice', '--target', elsewhere]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readFileSync(join(elsewhere, 'data/alice/report.txt'), 'utf8')).toBe('quarterly\n');
    expect(snapshot(join(c1.host.root, 'data'))).toEqual(before);
  });

  it('restores everything with the archived numeric ids (full)', async () => {
    wipe();
    const r = await restore(['data', '--method', 'full', '--target', c1.host.root]);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(snapshot(join(c1.host.root, 'data'))).toEqual(original);
  });

  it("maps names to the client's current ids (extract), where full keeps the old ones", async () => {
    // alice is reinstalled as uid 2000: extract follows the name, full keeps 1000.
    const passwdFile = join(c1.host.root, 'etc/passwd');
    writeFileSync(passwdFile, CLIENT_PASSWD.replace('alice:x:1000:1000', 'alice:x:2000:1000') + '\n');
    try {
      wipe();
      const r = await restore(['data/alice', '--method', 'extract', '--target', c1.host.root]);
      expect(r.exitCode, r.stdout + r.stderr).toBe(0);
      expect(lstatSync(join(c1.host.root, 'data/alice/report.txt')).uid).toBe(2000);
      wipe();
      const f = await restore(['data/alice', '--method', 'full', '--target', c1.host.root]);
      expect(f.exitCode, f.stdout + f.stderr).toBe(0);
      expect(lstatSync(join(c1.host.root, 'data/alice/report.txt')).uid).toBe(1000);
    } finally {
      writeFileSync(passwdFile, CLIENT_PASSWD + '\n');
    }
  });

  it("never writes through alice's symlink on the client: replaced where the stream has the directory, refused where it has only a file below", async () => {
    const outside = join(c1.host.dir, 'outside');
    mkdirSync(outside, { recursive: true });
    const plant = (): void => {
      wipe();
      mkdirSync(join(c1.host.root, 'data'));
      symlinkSync(outside, join(c1.host.root, 'data/alice'));
      lchownSync(join(c1.host.root, 'data/alice'), 1000, 1000);
    };
    plant();
    const partial = await restore(['data/alice/report.txt', '--target', c1.host.root]);
    expect(partial.exitCode).not.toBe(0);
    expect(partial.stderr).toMatch(/data\/alice\/report\.txt: not written: data\/alice is a symlink owned by uid 1000/);
    expect(readdirSync(outside)).toEqual([]);
    plant();
    const whole = await restore(['data/alice', '--target', c1.host.root]);
    expect(whole.exitCode, whole.stderr).toBe(0);
    expect(readdirSync(outside)).toEqual([]);
    expect(lstatSync(join(c1.host.root, 'data/alice')).isDirectory()).toBe(true);
    expect(readFileSync(join(c1.host.root, 'data/alice/report.txt'), 'utf8')).toBe('quarterly\n');
  });

  it('lists what it would write on --dry-run, and writes nothing', async () => {
    wipe();
    const r = await restore(['data/alice', '--dry-run', '--target', c1.host.root]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain('data/alice/report.txt');
    expect(r.stdout).toMatch(/nothing was written/);
    expect(() => lstatSync(join(c1.host.root, 'data'))).toThrow();
  });

  it('refuses a relative target, and / without --yes', async () => {
    const rel = await restore(['--target', 'relative/dir']);
    expect(rel.exitCode).not.toBe(0);
    expect(rel.stderr).toMatch(/absolute/);
    expect(rel.stderr).not.toMatch(/\n\s+at /);
    const live = await restore([]);
    expect(live.exitCode).not.toBe(0);
    expect(live.stderr).toMatch(/--yes/);
  });

  it('gives the controller no key and no sshd on the client: nothing there to write with', async () => {
    // The client runs no sshd at all, and enrollment put nothing in root's authorized_keys.
    expect(c1.host.isListening(22)).toBe(false);
    expect(existsSync(c1.host.authorizedKeysFile) ? readFileSync(c1.host.authorizedKeysFile, 'utf8') : '').not.toMatch(/borgpull/);
    // Backups reach the client only through its agent's read-only sftp-server (sftp-gate.test.ts: writes refused).
  });

  it('fails the job and ends both processes when the agent is killed mid-stream', async () => {
    c1.host.writeFiles({ 'data/huge.bin': randomBytes(96 * 1024 * 1024) });
    const b = await backup(ctl, ['pc1']);
    expect(b.jobs[0]?.status).toBe('succeeded');
    const target = join(c1.host.dir, 'killed');
    const run = ctl.cli(['restore', 'pc1', b.jobs[0]!.archive!, '--target', target], 300_000);
    await waitFor('restore streaming', () => existsSync(target) && pidsMatching('borg', 'export-tar', ctl.state).length > 0, {
      timeoutMs: 30_000,
      intervalMs: 20,
    });
    c1.agent!.kill('SIGKILL');
    const r = await run;
    expect(r.exitCode).not.toBe(0);
    await waitFor('borg gone', () => pidsMatching('borg', 'export-tar', ctl.state).length === 0, { timeoutMs: 15_000 });
    const jobs = await ctl.cli(['jobs', '--json']);
    const last = (JSON.parse(jobs.stdout) as Array<{ kind: string; status: string; reason?: string }>)[0];
    expect(last).toMatchObject({ kind: 'restore', status: 'failed' });
    expect(last?.reason).toMatch(/connection|agent/);
    await c1.startAgent();
    expect(jobLeftovers(ctl)).toEqual([]);
  }, 240_000);

  it('fails the job and ends both processes when the connection is cut mid-stream', async () => {
    const archives = JSON.parse((await ctl.cli(['archives', 'pc1', '--json'])).stdout) as Array<{ name: string }>;
    const target = join(c1.host.dir, 'cut');
    const run = ctl.cli(['restore', 'pc1', archives.at(-1)!.name, '--target', target], 300_000);
    await waitFor('restore streaming', () => existsSync(target) && pidsMatching('borg', 'export-tar', ctl.state).length > 0, {
      timeoutMs: 30_000,
      intervalMs: 20,
    });
    await c1.host.exec(['ip', 'link', 'set', 'eth0', 'down']);
    try {
      const r = await run;
      expect(r.exitCode).not.toBe(0);
      await waitFor('borg gone', () => pidsMatching('borg', 'export-tar', ctl.state).length === 0, { timeoutMs: 20_000 });
      const jobs = await ctl.cli(['jobs', '--json']);
      const last = (JSON.parse(jobs.stdout) as Array<{ kind: string; status: string; reason?: string }>)[0];
      expect(last).toMatchObject({ kind: 'restore', status: 'failed' });
      expect(last?.reason).toMatch(/connection/);
    } finally {
      await c1.host.exec(['ip', 'link', 'set', 'eth0', 'up']);
      await c1.host.exec(['ip', 'route', 'replace', '198.18.0.1/32', 'via', c1.host.serverAddress]);
    }
    await waitForAgent(ctl, 'pc1', true);
  }, 240_000);
});
