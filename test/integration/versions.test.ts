/**
 * Versions over loopback, with real processes: `--version`, the version each
 * agent reports (its hello's `software`, the agent's own word) as `controller
 * agents` shows and flags it, and a peer of another protocol version.
 * Needs a build (`npx tsc -b`): the executables run dist/.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentHandshake, decodeHandshake, encodeMessage, generateIdentity, parseIdentity } from '@borgpull/protocol';
import { AGENT_BIN, CONTROLLER_BIN, Procs, cli, freePort, safeSshdConfig, type Proc } from './procs.js';
import { RawClient } from './wire.js';

interface AgentView {
  name: string;
  connected: boolean;
  version: string | null;
  outdated: boolean;
}

const pkgVersion = async (pkg: string): Promise<string> =>
  (JSON.parse(await readFile(new URL(`../../packages/${pkg}/package.json`, import.meta.url), 'utf8')) as { version: string }).version;
const AGENT_VERSION = await pkgVersion('agent');
const CONTROLLER_VERSION = await pkgVersion('controller');

const procs = new Procs();
const raws: RawClient[] = [];
let tmp = '';
let state = '';
let controllerKey: Buffer;
let serve: Proc;
let port = 0;

const ctl = (...args: string[]) => cli(CONTROLLER_BIN, [...args, '--state-dir', state]);

async function agents(): Promise<AgentView[]> {
  const r = await ctl('agents', '--json');
  expect(r.exitCode, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as AgentView[];
}

/** Enrolls NAME with the real agent CLI; returns its state dir. */
async function enroll(name: string): Promise<string> {
  const tok = await ctl('token', name);
  expect(tok.exitCode, tok.stderr).toBe(0);
  const dir = join(tmp, `agent-${name}`);
  const r = await cli(AGENT_BIN, [
    'enroll',
    tok.stdout.trim(),
    '--state-dir',
    dir,
    '--authorized-keys',
    join(dir, 'authorized_keys'),
    '--sshd-host-key',
    join(tmp, 'host_key.pub'),
  ]);
  expect(r.exitCode, r.stderr).toBe(0);
  return dir;
}

/** Connects as the enrolled agent in `dir`, over a raw socket, saying `software` in its hello. */
async function connectAs(name: string, dir: string, software: string): Promise<RawClient> {
  const identity = parseIdentity(await readFile(join(dir, 'identity.json'), 'utf8'));
  const hs = new AgentHandshake({ identity, controllerKey, software });
  const rc = await RawClient.connect(`ws://127.0.0.1:${port}`);
  raws.push(rc);
  const from = serve.mark();
  rc.send(hs.hello());
  rc.send(hs.onWelcome((await rc.nextFrame()).data));
  await serve.waitForLog({ msg: 'agent connected', agentId: name }, { from });
  return rc;
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'borgpull-versions-'));
  state = join(tmp, 'controller');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test-host', '-f', join(tmp, 'host_key')]);
  port = await freePort();
  const init = await ctl(
    'init',
    '--url',
    `ws://127.0.0.1:${port}`,
    '--ssh-host-key',
    join(tmp, 'host_key.pub'),
    '--sshd-config',
    safeSshdConfig(tmp, join(tmp, 'host_key')),
    // No job starts by itself in a test that did not ask for one.
    '--schedule',
    'off',
  );
  expect(init.exitCode, init.stderr).toBe(0);
  controllerKey = Buffer.from(/controller key bp-ed25519:(\S+)/.exec(init.stdout)?.[1] ?? '', 'base64url');
  serve = procs.spawn('controller', CONTROLLER_BIN, ['serve', '--state-dir', state]);
  await serve.waitForLog({ msg: 'controller state', to: 'running' });
});

afterEach(() => {
  for (const rc of raws.splice(0)) rc.terminate();
});

afterAll(async () => {
  await procs.killAll();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('versions', () => {
  it('--version prints each program and its version, and runs nothing', async () => {
    expect(await cli(AGENT_BIN, ['--version'])).toMatchObject({ exitCode: 0, stdout: `borgpull-agent ${AGENT_VERSION}`, stderr: '' });
    expect(await cli(CONTROLLER_BIN, ['--version'])).toMatchObject({
      exitCode: 0,
      stdout: `borgpull-controller ${CONTROLLER_VERSION}`,
      stderr: '',
    });
  });

  it('shows the real agent current, and flags an older agent of the same protocol version (allowed)', async () => {
    const dir = await enroll('cur');
    const from = serve.mark();
    const real = procs.spawn('agent cur', AGENT_BIN, ['run', '--state-dir', dir]);
    await serve.waitForLog({ msg: 'agent connected', agentId: 'cur' }, { from });
    expect((await agents()).find((a) => a.name === 'cur')).toMatchObject({
      connected: true,
      version: `borgpull-agent/${AGENT_VERSION}`,
      outdated: false,
    });
    await real.kill();

    // An agent one release behind (0.0.x is older than any 0.1.0 or later): it connects and is flagged.
    const old = await enroll('old');
    await connectAs('old', old, 'borgpull-agent/0.0.9');
    expect((await agents()).find((a) => a.name === 'old')).toMatchObject({
      connected: true,
      version: 'borgpull-agent/0.0.9',
      outdated: true,
    });
    // A pre-release of the controller's own version is older too (semver), and a newer agent is not flagged.
    const pre = await enroll('pre');
    await connectAs('pre', pre, `borgpull-agent/${CONTROLLER_VERSION}-rc.1`);
    const newer = await enroll('newer');
    await connectAs('newer', newer, 'borgpull-agent/999.0.0');
    const list = await agents();
    expect(list.find((a) => a.name === 'pre')).toMatchObject({ outdated: true });
    expect(list.find((a) => a.name === 'newer')).toMatchObject({ connected: true, outdated: false });

    const table = (await ctl('agents')).stdout.split('\n');
    expect(table.find((l) => l.startsWith('old '))).toMatch(/borgpull-agent\/0\.0\.9 \(outdated\)$/);
    expect(table.find((l) => l.startsWith('newer '))).toMatch(/borgpull-agent\/999\.0\.0$/);
    expect(table.find((l) => l.startsWith('cur '))).toMatch(new RegExp(`borgpull-agent/${AGENT_VERSION.replaceAll('.', '\\.')}$`));
  });

  it('shows a version it cannot parse escaped and flagged unknown, never as current or outdated', async () => {
    const dir = await enroll('odd');
    // C1 CSI and a bidi override, around something that almost looks like a version.
    await connectAs('odd', dir, 'borgpull-agent/0.0.1\u009b2J\u202e');
    expect((await agents()).find((a) => a.name === 'odd')).toMatchObject({
      version: 'borgpull-agent/0.0.1\\x9b2J\\u202e',
      outdated: false,
    });
    const out = (await ctl('agents')).stdout;
    expect(out.split('\n').find((l) => l.startsWith('odd '))).toMatch(/borgpull-agent\/0\.0\.1\\x9b2J\\u202e \(unknown\)$/);
    expect(/[\u0080-\u009f\u202e]/.test(out)).toBe(false);
    // Still listed so once it is gone: the registry keeps the escaped string.
    for (const rc of raws.splice(0)) rc.terminate();
    await expect.poll(async () => (await agents()).find((a) => a.name === 'odd')?.connected, { timeout: 10_000 }).toBe(false);
    expect((await ctl('agents')).stdout.split('\n').find((l) => l.startsWith('odd '))).toMatch(/\(unknown\)$/);
  });

  it('refuses a peer of another protocol version with E_PROTO_VERSION, whatever else its hello holds', async () => {
    const rc = await RawClient.connect(`ws://127.0.0.1:${port}`);
    raws.push(rc);
    const from = serve.mark();
    // What a later agent's hello might be: the same type and v, any other fields.
    rc.send(encodeMessage({ type: 'hello', v: 2, agentKey: generateIdentity().publicKey, caps: ['x'] } as never));
    const reply = decodeHandshake((await rc.nextFrame()).data);
    expect(reply).toMatchObject({
      type: 'error',
      code: 'E_PROTO_VERSION',
      message: 'agent speaks protocol version 2, this controller speaks 1',
    });
    expect(await rc.closed()).toMatchObject({ code: 1008, reason: 'E_PROTO_VERSION' });
    await serve.waitForLog({ msg: 'connection rejected', code: 'E_PROTO_VERSION', peer: rc.peer }, { from });
  });
});
