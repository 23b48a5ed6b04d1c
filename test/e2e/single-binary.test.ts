import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoLeftovers, cleanupAll, createClientHost, requireTools, type ClientHost, type HostSubprocess } from '../harness/index.js';
import { ensureBundle } from './bundle-build.js';
import {
  agentsJson,
  backup,
  listItems,
  startController,
  waitForAgent,
  CLIENT_GROUP,
  CLIENT_PASSWD,
  HEARTBEAT_MS,
  ROOT,
  type Controller,
} from './fixture.js';

/** The PATH a service gets on a Debian client: no node_modules/.bin, nothing of this repository. */
const CLEAN_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const NAME = 'bare1';

/** Every Node.js this machine could hand a process in the client: ours, and any `node`/`nodejs` on a usual PATH. */
function nodeBinaries(): string[] {
  const dirs = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin', ...(process.env['PATH'] ?? '').split(':')];
  const found = new Set([realpathSync(process.execPath)]);
  for (const d of dirs) {
    for (const n of ['node', 'nodejs']) {
      const p = join(d, n);
      if (d.startsWith('/') && existsSync(p)) found.add(realpathSync(p));
    }
  }
  return [...found];
}

describe('the single-binary agent on a client with no Node.js and no repository', () => {
  let ctl: Controller;
  let host: ClientHost;
  let agent: HostSubprocess | undefined;
  /** Where the binary sits in the client's own tree (as a host path; the client's processes see the same path). */
  let installed = '';
  let agentState = '';
  /** Runs argv in the client with nothing from our environment. */
  const inClient = (argv: string[], timeout = 60_000) =>
    host.exec(['env', '-i', CLEAN_PATH, ...argv], { cwd: '/', reject: false, timeout });

  beforeAll(async () => {
    requireTools();
    const { binary } = await ensureBundle('agent');
    ctl = await startController();
    host = await createClientHost(ctl.server, { name: NAME, passwd: CLIENT_PASSWD, group: CLIENT_GROUP, sshd: false });
    // Only the binary is copied in, where an admin would put it.
    installed = join(host.root, 'usr/local/bin/borgpull-agent');
    mkdirSync(join(host.root, 'usr/local/bin'), { recursive: true, mode: 0o755 });
    copyFileSync(binary, installed);
    chmodSync(installed, 0o755);
    agentState = join(host.dir, 'agent-state');
    // No Node.js in the client: every node binary is a script that fails like a missing command...
    const noNode = join(host.dir, 'no-node');
    writeFileSync(noNode, '#!/bin/sh\necho "node: not installed on this client" >&2\nexit 127\n', { mode: 0o755 });
    for (const n of nodeBinaries()) await host.exec(['mount', '--bind', noNode, n], { cwd: '/' });
    // ...and no repository: its directory (node_modules, dist, everything) is an empty read-only tmpfs there.
    await host.exec(['mount', '-t', 'tmpfs', '-o', 'ro,size=16k,mode=0755', 'borgpull-no-repo', ROOT], { cwd: '/' });
  }, 300_000);

  afterAll(async () => {
    await cleanupAll();
    assertNoLeftovers();
    if (installed) rmSync(installed, { force: true });
  });

  it('finds no Node.js and no repository in the client', async () => {
    for (const argv of [
      ['sh', '-c', 'node --version'],
      ['sh', '-c', 'nodejs --version'],
      [process.execPath, '--version'],
    ]) {
      const r = await inClient(argv);
      expect(r.exitCode, `${argv.join(' ')}: ${r.stdout}`).not.toBe(0);
      expect(r.stdout).not.toMatch(/v\d+\./);
    }
    expect((await inClient(['test', '-e', join(ROOT, 'package.json')])).exitCode).not.toBe(0);
    expect((await inClient(['test', '-e', join(ROOT, 'node_modules')])).exitCode).not.toBe(0);
    const v = await inClient([installed, '--version']);
    expect(v.exitCode, v.stderr).toBe(0);
    expect(v.stdout.trim()).toMatch(/^borgpull-agent \d+\.\d+\.\d+/);
  });

  it('enrolls and runs as a service from the one binary', async () => {
    const tok = await ctl.cli(['token', NAME]);
    expect(tok.exitCode, tok.stderr).toBe(0);
    const enroll = await inClient([installed, 'enroll', tok.stdout.trim(), '--state-dir', agentState, '--sftp-root', host.root]);
    expect(enroll.exitCode, enroll.stdout + enroll.stderr).toBe(0);
    expect(enroll.stdout).toContain(`enrolled as '${NAME}'`);
    agent = host.spawn(['env', '-i', CLEAN_PATH, `BORGPULL_HEARTBEAT_MS=${HEARTBEAT_MS}`, installed, 'run', '--state-dir', agentState], {
      cwd: '/',
      stdin: 'ignore',
    });
    await waitForAgent(ctl, NAME, true);
    // nsenter and env exec in place: this pid is the agent, and it is the binary, with no Node.js and no addon loaded.
    const pid = agent.pid ?? 0;
    expect(readlinkSync(`/proc/${pid}/exe`)).toBe(installed);
    const maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
    expect(maps).not.toMatch(/\.node$|node_modules/m);
    const view = (await agentsJson(ctl)).find((a) => a.name === NAME) as { version?: string; outdated?: boolean } | undefined;
    expect(view).toMatchObject({
      version: `borgpull-agent/${(await inClient([installed, '--version'])).stdout.trim().split(' ')[1]}`,
      outdated: false,
    });
  });

  it('is backed up and restored through the controller', async () => {
    expect(agent?.exitCode ?? null, 'the agent is still running').toBeNull();
    host.writeFiles({
      'data/alice/notes.txt': { content: 'alice on a bare client\n', uid: 1000, gid: 1000, mode: 0o640 },
      'data/bob/link': { symlink: '../alice/notes.txt' },
    });
    // The binary itself (~95 MiB, under usr/) is not what this test backs up.
    ctl.configure({ agents: { [NAME]: { exclude: ['usr'] } } });
    const b = await backup(ctl, [NAME]);
    expect(b.jobs[0], b.stdout + b.stderr).toMatchObject({ agent: NAME, status: 'succeeded' });
    const archive = b.jobs[0]?.archive ?? '';
    const items = await listItems(ctl, NAME, archive);
    expect(items.find((i) => i.path === 'data/alice/notes.txt')).toMatchObject({ user: 'alice', uid: 1000, mode: '-rw-r-----' });
    expect(items.find((i) => i.path === 'data/bob/link')).toMatchObject({ type: 'l', linktarget: '../alice/notes.txt' });

    rmSync(join(host.root, 'data'), { recursive: true, force: true });
    const r = await ctl.cli(['restore', NAME, archive, 'data', '--target', host.root], 300_000);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/verified by the agent/);
    expect(readFileSync(join(host.root, 'data/alice/notes.txt'), 'utf8')).toBe('alice on a bare client\n');
    expect(readlinkSync(join(host.root, 'data/bob/link'))).toBe('../alice/notes.txt');
    expect(agent?.exitCode ?? null, 'the agent is still running').toBeNull();
  });
});
