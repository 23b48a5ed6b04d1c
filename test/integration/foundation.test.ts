/**
 * The foundation with real processes over loopback: `controller serve` and
 * `agent run` as child processes, every admin action through the CLIs, and
 * raw WebSocket clients and a frame proxy for what a hostile peer would send.
 * Needs a build (`npx tsc -b`): the executables run dist/.
 */
import { existsSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { Packr, unpack } from 'msgpackr';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AgentHandshake,
  BorgpullError,
  Channel,
  decodeControllerMessage,
  decodeHandshake,
  encodeMessage,
  generateIdentity,
  parseIdentity,
  parseToken,
  tokenSigningKey,
  type AgentMessage,
  type ControllerMessage,
  type IdentityKeys,
} from '@borgpull/protocol';
import { AGENT_BIN, CONTROLLER_BIN, Procs, cli, freePort, oneLineError, safeSshdConfig, type CliResult, type Proc } from './procs.js';
import { waitFor } from '../harness/wait.js';
import { FrameProxy, RawClient, type Frame } from './wire.js';

interface AgentView {
  name: string;
  connected: boolean;
  since: number | null;
  lastSeen: number | null;
  address: string | null;
  version: string | null;
  port: number;
  revoked: boolean;
}

const AGENT_VERSION = (
  JSON.parse(await readFile(new URL('../../packages/agent/package.json', import.meta.url), 'utf8')) as { version: string }
).version;

const procs = new Procs();
const cleanups: Array<() => Promise<void> | void> = [];
let tmp = '';
let hostKeyFile = '';
let sshdConfig = '';
let seq = 0;

/**
 * The handshake deadline is 10 s and not configurable from the CLI, so the
 * garbage test's slow half starts here, before every other test: a controller
 * with a connected agent and two connections that never finish their
 * handshake. The garbage test (last in this file) collects the outcome.
 */
interface SlowFixture {
  c: Controller;
  agent: Proc;
  agentDir: string;
  before: AgentView;
  agentFrom: number;
  /** Sends nothing at all. */
  silent: RawClient;
  /** Sends a genuine hello, gets a genuine welcome, never sends its auth. */
  stalled: RawClient;
}
const slowProcs = new Procs();
let slow: SlowFixture | undefined;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'borgpull-it-'));
  hostKeyFile = join(tmp, 'ssh_host_ed25519_key');
  // A host key of our own, so nothing depends on this machine's sshd.
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test-host', '-f', hostKeyFile]);
  sshdConfig = safeSshdConfig(tmp, hostKeyFile);

  const c = await startController({ owner: slowProcs });
  const dir = await enrollAgent(c, 'steady');
  const agent = await runAgent(c, 'steady', dir);
  const before = await c.agent('steady');
  const agentFrom = agent.mark();
  const url = `ws://127.0.0.1:${c.listenPort}`;
  const silent = await RawClient.connect(url);
  const stalled = await RawClient.connect(url);
  slow = { c, agent, agentDir: dir, before, agentFrom, silent, stalled };
  const identity: IdentityKeys = parseIdentity(await readFile(join(dir, 'identity.json'), 'utf8'));
  const hs = new AgentHandshake({ identity, controllerKey: controllerKeyOf(c), software: 'test' });
  stalled.send(hs.hello());
  hs.onWelcome((await stalled.nextFrame()).data);
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await procs.killAll();
});

afterAll(async () => {
  slow?.silent.terminate();
  slow?.stalled.terminate();
  await slowProcs.killAll();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

function controllerKeyOf(c: Controller): Buffer {
  return Buffer.from(c.key.slice('bp-ed25519:'.length), 'base64url');
}

class Controller {
  serve!: Proc;
  owner: Procs = procs;
  key = '';
  /** Port agents are told to dial (the proxy's, when there is one). */
  port = 0;
  /** Port the daemon actually listens on. */
  listenPort = 0;
  /** Extra environment for `controller serve`. */
  env: Record<string, string> = {};
  constructor(readonly dir: string) {}

  run(...args: string[]): Promise<CliResult> {
    return cli(CONTROLLER_BIN, [...args, '--state-dir', this.dir]);
  }

  /** Starts `controller serve` and waits until it is running. */
  async start(): Promise<Proc> {
    this.serve = this.owner.spawn('controller', CONTROLLER_BIN, ['serve', '--state-dir', this.dir], this.env);
    const listening = await this.serve.waitForLog({ msg: 'listening for agents' });
    this.listenPort = listening['port'] as number;
    await this.serve.waitForLog({ msg: 'controller state', to: 'running' });
    return this.serve;
  }

  async agents(): Promise<AgentView[]> {
    const r = await this.run('agents', '--json');
    expect(r.exitCode, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as AgentView[];
  }

  async agent(name: string): Promise<AgentView> {
    const a = (await this.agents()).find((v) => v.name === name);
    if (!a) throw new Error(`agent ${name} is not listed`);
    return a;
  }

  async token(name: string, ...extra: string[]): Promise<{ token: string; expiresAt: number }> {
    const r = await this.run('token', name, '--json', ...extra);
    expect(r.exitCode, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { token: string; expiresAt: number };
  }
}

/** `controller init` in a fresh state dir, then `controller serve`. */
async function startController(
  opts: { url?: string; listen?: string; owner?: Procs; env?: Record<string, string> } = {},
): Promise<Controller> {
  const c = new Controller(join(tmp, `controller-${++seq}`));
  if (opts.owner) c.owner = opts.owner;
  if (opts.env) c.env = opts.env;
  c.port = opts.url ? Number(new URL(opts.url).port) : await freePort();
  const url = opts.url ?? `ws://127.0.0.1:${c.port}`;
  // No job starts by itself in a test that did not ask for one.
  const args = ['init', '--url', url, '--ssh-host-key', `${hostKeyFile}.pub`, '--sshd-config', sshdConfig, '--schedule', 'off'];
  if (opts.listen) args.push('--listen', opts.listen);
  const init = await c.run(...args);
  expect(init.exitCode, init.stderr).toBe(0);
  c.key = /controller key (bp-ed25519:\S+)/.exec(init.stdout)?.[1] ?? '';
  expect(c.key).not.toBe('');
  await c.start();
  return c;
}

function agentDir(): string {
  return join(tmp, `agent-${++seq}`);
}

function agentCli(...args: string[]): Promise<CliResult> {
  return cli(AGENT_BIN, args);
}

function enrollCli(token: string, dir: string, ...extra: string[]): Promise<CliResult> {
  // Our own files for this machine's authorized_keys and sshd host key: nothing outside the temp dir.
  return agentCli(
    'enroll',
    token,
    '--state-dir',
    dir,
    '--authorized-keys',
    join(dir, 'authorized_keys'),
    '--sshd-host-key',
    `${hostKeyFile}.pub`,
    ...extra,
  );
}

/** Token + `agent enroll`; returns the agent's state dir. */
async function enrollAgent(c: Controller, name: string): Promise<string> {
  const dir = agentDir();
  const { token } = await c.token(name);
  const r = await enrollCli(token, dir);
  expect(r.exitCode, r.stderr).toBe(0);
  return dir;
}

/** `agent run`, waited on until the controller has its connection. */
async function runAgent(c: Controller, name: string, dir: string): Promise<Proc> {
  const from = c.serve.mark();
  const p = c.owner.spawn(`agent ${name}`, AGENT_BIN, ['run', '--state-dir', dir]);
  await p.waitForLog({ msg: 'agent state', to: 'connected' });
  await c.serve.waitForLog({ msg: 'agent connected', agentId: name }, { from });
  return p;
}

async function rawClient(c: Controller): Promise<RawClient> {
  const rc = await RawClient.connect(`ws://127.0.0.1:${c.listenPort}`);
  cleanups.push(() => rc.terminate());
  return rc;
}

/** The controller's 'connection rejected' line for one raw client. */
function rejection(c: Controller, rc: RawClient): Promise<{ code?: string }> {
  return c.serve.waitForLog({ msg: 'connection rejected', peer: rc.peer });
}

describe('foundation over loopback (real processes)', () => {
  it('enrolls an agent that connects, is listed with version and address, and reports its status', async () => {
    const c = await startController();
    const { token, expiresAt } = await c.token('web1');
    expect(token).toMatch(/^bpt1\.[A-Za-z0-9_-]+$/);
    expect(expiresAt).toBeGreaterThan(Date.now() + 59 * 60_000);

    const dir = agentDir();
    const enrolled = await enrollCli(token, dir);
    expect(enrolled.exitCode, enrolled.stderr).toBe(0);
    expect(enrolled.stdout).toContain(`enrolled as 'web1' with ws://127.0.0.1:${c.port}`);
    expect(c.serve.find({ msg: 'agent enrolled', agentId: 'web1' })).toBeDefined();
    // No key of the controller's on the client: backups go through the agent's own SFTP gate.
    expect(existsSync(join(dir, 'authorized_keys'))).toBe(false);

    const offline = await c.agent('web1');
    expect(offline).toMatchObject({ connected: false, revoked: false });

    await runAgent(c, 'web1', dir);
    const view = await c.agent('web1');
    expect(view).toMatchObject({ name: 'web1', connected: true, revoked: false, version: `borgpull-agent/${AGENT_VERSION}` });
    expect(view.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(view.since).toEqual(expect.any(Number));
    expect(view.port).toBeGreaterThanOrEqual(1024);

    const [table, status, statusJson] = await Promise.all([
      c.run('agents'),
      agentCli('status', '--state-dir', dir),
      agentCli('status', '--json', '--state-dir', dir),
    ]);
    expect(table.exitCode).toBe(0);
    expect(table.stdout).toMatch(/^web1\s+connected\s+/m);
    expect(status.exitCode, status.stderr).toBe(0);
    const statusLines = status.stdout.split('\n');
    expect(statusLines[0]).toBe(`enrolled as 'web1' with ws://127.0.0.1:${c.port} (tunnel port ${view.port})`);
    expect(statusLines[1]).toMatch(/^restore policy: /);
    expect(statusLines[2]).toBe('no restore orders received');
    expect(JSON.parse(statusJson.stdout)).toMatchObject({
      name: 'web1',
      url: `ws://127.0.0.1:${c.port}`,
      controllerKey: c.key,
      tunnel: { port: view.port, sshHost: '127.0.0.1' },
    });
  });

  it('survives kill -9 of the controller: the registry is intact and the agent comes back by itself', async () => {
    const c = await startController();
    const dir = await enrollAgent(c, 'web1');
    const agent = await runAgent(c, 'web1', dir);
    const before = await c.agent('web1');

    const mark = agent.mark();
    await c.serve.kill('SIGKILL');
    expect(c.serve.signal).toBe('SIGKILL');
    await agent.waitForLog({ msg: 'agent state', to: 'waiting' }, { from: mark });

    const restarted = Date.now();
    const serve = await c.start();
    await serve.waitForLog({ msg: 'agent connected', agentId: 'web1' }, { timeoutMs: 20_000 });
    // Backoff starts at 500 ms, doubling, full jitter: a few failed dials at most.
    expect(Date.now() - restarted).toBeLessThan(15_000);

    const after = await c.agent('web1');
    expect(after).toMatchObject({ connected: true, revoked: false, port: before.port, version: before.version });
    expect(after.since!).toBeGreaterThan(before.since!);
    expect(serve.find((l) => l.code !== undefined)).toBeUndefined();
    expect(agent.running).toBe(true);
  });

  it('refuses a used, a forged and an expired enrollment token', async () => {
    const c = await startController();
    // --ttl is minutes; 0.01 is 600 ms, spent while the other cases run.
    const [{ token }, { token: genuine }, late] = await Promise.all([c.token('web1'), c.token('web2'), c.token('web3', '--ttl', '0.01')]);
    const first = await enrollCli(token, agentDir());
    expect(first.exitCode, first.stderr).toBe(0);

    // Reuse, from another machine.
    let from = c.serve.mark();
    const reused = await enrollCli(token, agentDir());
    expect(oneLineError(reused)).toMatch(/^agent: .*enrollment token was already used/);
    expect((await c.serve.waitForLog({ msg: 'connection rejected' }, { from })).code).toBe('E_AUTH_TOKEN');

    // Forged: the same token with one bit of its secret flipped.
    const body = unpack(Buffer.from(genuine.slice('bpt1.'.length), 'base64url')) as Record<string, unknown>;
    const secret = Buffer.from(body['s'] as Uint8Array);
    secret[7]! ^= 0x01;
    const forged = 'bpt1.' + new Packr({ useRecords: false }).pack({ ...body, s: secret }).toString('base64url');
    expect(parseToken(forged).id).toBe(parseToken(genuine).id);
    from = c.serve.mark();
    const forgedRun = await enrollCli(forged, agentDir());
    expect(oneLineError(forgedRun)).toMatch(/^agent: .*forged/);
    expect((await c.serve.waitForLog({ msg: 'connection rejected' }, { from })).code).toBe('E_AUTH_TOKEN');
    // A failed proof does not burn the token: its real holder still enrolls.
    const real = await enrollCli(genuine, agentDir());
    expect(real.exitCode, real.stderr).toBe(0);

    // Expired.
    await waitFor('the token to expire', () => Date.now() > late.expiresAt + 10);
    const expired = await enrollCli(late.token, agentDir());
    expect(oneLineError(expired)).toMatch(/^agent: this enrollment token has expired/);
    // The agent refused it locally; the controller must refuse it too.
    const tok = parseToken(late.token);
    const hs = new AgentHandshake({
      identity: generateIdentity(),
      controllerKey: tok.controllerKey,
      software: 'test',
      enroll: { tokenId: tok.id, tokenKey: tokenSigningKey(tok.secret) },
    });
    const rc = await rawClient(c);
    rc.send(hs.hello());
    const refusal = await rc.nextFrame();
    let thrown: unknown;
    try {
      hs.onWelcome(refusal.data);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(BorgpullError);
    expect((thrown as BorgpullError).code).toBe('E_AUTH_TOKEN');
    expect((thrown as BorgpullError).message).toMatch(/expired/);
    expect(await rc.closed()).toEqual({ code: 1008, reason: 'E_AUTH_TOKEN' });
    expect((await rejection(c, rc)).code).toBe('E_AUTH_TOKEN');

    const names = (await c.agents()).map((a) => a.name);
    expect(names).toEqual(['web1', 'web2']);
  });

  it('refuses a token whose record an older controller wrote (a secretHash, no verifier), in one line, and drops that hash', async () => {
    const c = await startController();
    const { token } = await c.token('legacy1');
    await c.serve.kill('SIGTERM');
    // What registry.json held before tokens had verifiers: sha256(secret), which was the HMAC key itself.
    const file = join(c.dir, 'registry.json');
    const reg = JSON.parse(await readFile(file, 'utf8')) as { tokens: Array<Record<string, unknown>> };
    const secretHash = createHash('sha256').update(parseToken(token).secret).digest('hex');
    reg.tokens = reg.tokens.map(({ verifier: _v, ...t }) => ({ ...t, secretHash }));
    await writeFile(file, JSON.stringify(reg));
    await c.start();
    const from = c.serve.mark();
    const r = await enrollCli(token, agentDir());
    expect(oneLineError(r)).toMatch(/^agent: .*issued by an older controller.*controller token NAME/);
    expect((await c.serve.waitForLog({ msg: 'connection rejected' }, { from })).code).toBe('E_AUTH_TOKEN_FORMAT');
    // A new token works; the registry written for it no longer holds the old key.
    const fresh = await enrollCli((await c.token('legacy2')).token, agentDir());
    expect(fresh.exitCode, fresh.stderr).toBe(0);
    expect(await readFile(file, 'utf8')).not.toContain(secretHash);
  });

  it("shows an agent's software string with its control characters escaped", async () => {
    const c = await startController();
    const dir = await enrollAgent(c, 'web1');
    const identity = parseIdentity(await readFile(join(dir, 'identity.json'), 'utf8'));
    // C0 and DEL are refused by the decoder; C1 (U+009B is CSI to xterm) and bidi controls are not.
    const software = 'evil\u009b2J\u009d0;pwned\u202e';
    const hs = new AgentHandshake({ identity, controllerKey: controllerKeyOf(c), software });
    const rc = await rawClient(c);
    const from = c.serve.mark();
    rc.send(hs.hello());
    rc.send(hs.onWelcome((await rc.nextFrame()).data));
    await c.serve.waitForLog({ msg: 'agent connected', agentId: 'web1' }, { from });
    const raw = /[\u0000-\u001f\u007f-\u009f\u202e]/;
    expect((await c.agent('web1')).version).toBe('evil\\x9b2J\\x9d0;pwned\\u202e');
    const table = await c.run('agents');
    expect(table.stdout).toContain('evil\\x9b2J');
    expect(raw.test(table.stdout.replaceAll('\n', ''))).toBe(false);
    expect(raw.test(c.serve.find({ msg: 'agent connected', agentId: 'web1' }, from)?.['software'] as string)).toBe(false);
  });

  it('cuts off an authenticated agent that stops answering pings (the heartbeat)', async () => {
    const c = await startController({ env: { BORGPULL_HEARTBEAT_MS: '300' } });
    const dir = await enrollAgent(c, 'mute');
    const identity = parseIdentity(await readFile(join(dir, 'identity.json'), 'utf8'));
    const from = c.serve.mark();
    const mute = await RawClient.connect(`ws://127.0.0.1:${c.listenPort}`, { autoPong: false });
    cleanups.push(() => mute.terminate());
    const hs = new AgentHandshake({ identity, controllerKey: controllerKeyOf(c), software: 'test' });
    mute.send(hs.hello());
    mute.send(hs.onWelcome((await mute.nextFrame()).data));
    await c.serve.waitForLog({ msg: 'agent connected', agentId: 'mute' }, { from });
    const connectedAt = Date.now();
    await c.serve.waitForLog({ msg: 'agent missed its heartbeat, terminating', agentId: 'mute' }, { from });
    expect((await mute.closed()).code).toBe(1006); // terminated, no close frame
    // One ping unanswered, cut at the next tick: ~600 ms at 300 ms intervals (busy machine: well under 5 s).
    expect(Date.now() - connectedAt).toBeLessThan(5000);
    await waitFor('mute listed as disconnected', async () => !(await c.agent('mute')).connected);
  });

  it('revoke cuts a connected agent off and refuses its reconnects', async () => {
    const c = await startController();
    const dir = await enrollAgent(c, 'web1');
    const agent = await runAgent(c, 'web1', dir);
    const from = c.serve.mark();
    const agentFrom = agent.mark();

    const r = await c.run('agents', 'revoke', 'web1');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe("agent 'web1' revoked: its key is refused from now on");

    await c.serve.waitForLog({ msg: 'agent disconnected', agentId: 'web1' }, { from });
    // The agent never gives up, and is refused every time.
    await waitFor(
      'two refused reconnects',
      () => c.serve.filter({ msg: 'connection rejected', code: 'E_AUTH_REVOKED' }, from).length >= 2,
      {
        context: () => c.serve.tail(),
      },
    );
    await agent.waitForLog({ msg: 'connection to controller failed', code: 'E_AUTH_REVOKED' }, { from: agentFrom });
    expect(c.serve.find({ msg: 'agent connected' }, from)).toBeUndefined();

    const view = await c.agent('web1');
    expect(view).toMatchObject({ connected: false, revoked: true });
    const table = await c.run('agents');
    expect(table.stdout).toMatch(/^web1\s+revoked\s+/m);
  });

  it('closes a session fed a replayed sealed frame (E_AUTH_SEAL); the agent reconnects by itself', async () => {
    const proxy = new FrameProxy();
    cleanups.push(() => proxy.stop());
    const proxyPort = await proxy.start();
    const c = await startController({ url: `ws://127.0.0.1:${proxyPort}`, listen: '127.0.0.1:0' });
    proxy.target = `ws://127.0.0.1:${c.listenPort}`;

    // Enrollment through the proxy: hello, auth, then the sealed 'enroll' request.
    const dir = await enrollAgent(c, 'web1');
    const enrollConn = proxy.conns[0]!;
    expect(enrollConn.fromAgent.length).toBeGreaterThanOrEqual(3);
    const captured: Frame = enrollConn.fromAgent[2]!;
    expect(() => decodeHandshake(captured.data)).toThrow(); // sealed, not plaintext

    const agent = await runAgent(c, 'web1', dir);
    const before = await c.agent('web1');
    const session = proxy.conns[1]!;
    const from = c.serve.mark();
    const agentFrom = agent.mark();

    session.sendUp(captured);
    const bad = await c.serve.waitForLog({ msg: 'bad frame from agent, closing' }, { from });
    expect(bad.code).toBe('E_AUTH_SEAL');
    await c.serve.waitForLog({ msg: 'agent disconnected', agentId: 'web1' }, { from });
    await agent.waitForLog({ msg: 'agent state', to: 'waiting' }, { from: agentFrom });

    await c.serve.waitForLog({ msg: 'agent connected', agentId: 'web1' }, { from, timeoutMs: 15_000 });
    await agent.waitForLog({ msg: 'agent state', to: 'connected' }, { from: agentFrom });
    const after = await c.agent('web1');
    expect(after.connected).toBe(true);
    expect(after.since!).toBeGreaterThan(before.since!);
    expect(proxy.conns.length).toBeGreaterThanOrEqual(3); // enroll, first session, the reconnect: all through the proxy
  });

  it('closes an enrollment session whose sealed request is replayed within it (E_AUTH_SEAL)', async () => {
    const proxy = new FrameProxy();
    cleanups.push(() => proxy.stop());
    const proxyPort = await proxy.start();
    const c = await startController({ url: `ws://127.0.0.1:${proxyPort}`, listen: '127.0.0.1:0' });
    proxy.target = `ws://127.0.0.1:${c.listenPort}`;
    // Forward the first sealed frame twice.
    proxy.upstream = (_conn, f, i) => (i === 2 ? [f, f] : [f]);

    const { token } = await c.token('web1');
    const from = c.serve.mark();
    const r = await enrollCli(token, agentDir());
    const bad = await c.serve.waitForLog({ msg: 'bad frame from agent, closing' }, { from });
    expect(bad.code).toBe('E_AUTH_SEAL');
    expect(oneLineError(r)).toMatch(/^agent: the controller refused the enrollment \(.*frame failed authentication/);
  });

  // Regressions: each of these was a bug found by this suite, and is fixed.
  describe('regressions', () => {
    it('logs a code for a frame above the WebSocket payload limit', async () => {
      const { c } = slow!;
      const huge = await rawClient(c);
      huge.send(Buffer.alloc(5 * 1024 * 1024, 0xc0));
      expect((await huge.closed()).code).toBe(1009);
      await c.serve.waitForLog({ peer: huge.peer, code: 'E_PROTO_FRAME_TOO_LARGE' }, { timeoutMs: 1_000 });
    });

    it('does not keep an enrollment whose session was cut before the agent got the reply', async () => {
      const proxy = new FrameProxy();
      cleanups.push(() => proxy.stop());
      const proxyPort = await proxy.start();
      const c = await startController({ url: `ws://127.0.0.1:${proxyPort}`, listen: '127.0.0.1:0' });
      proxy.target = `ws://127.0.0.1:${c.listenPort}`;
      proxy.upstream = (_conn, f, i) => (i === 2 ? [f, f] : [f]);
      const { token } = await c.token('web1');
      const from = c.serve.mark();
      const dir = agentDir();
      const r = await enrollCli(token, dir);
      expect(r.exitCode).toBe(1);
      await c.serve.waitForLog({ code: 'E_AUTH_SEAL' }, { from });
      // The agent was told it is not enrolled, so the admin does what anyone would: a new token, enroll again.
      // Today the controller committed the cut-off enrollment anyway ('agent enrolled' after the
      // E_AUTH_SEAL line): the name is taken and the token burnt, and this machine can only come back
      // after a revoke, which bans its key (and --force keeps that key: see below).
      proxy.upstream = (_conn, f) => [f];
      const retry = await c.run('token', 'web1', '--json');
      expect(retry.stderr).toBe('');
      const again = await enrollCli((JSON.parse(retry.stdout) as { token: string }).token, dir);
      expect(again.stderr).toBe('');
      expect(again.exitCode).toBe(0);
    });

    it('refuses an enrolling hello with a wrong token proof even from an enrolled key', async () => {
      const c = await startController();
      const dir = await enrollAgent(c, 'web1');
      const identity = parseIdentity(await readFile(join(dir, 'identity.json'), 'utf8'));
      const controllerKey = controllerKeyOf(c);
      // A pending token for another machine: we know its id (it is logged), not its secret.
      const victim = parseToken((await c.token('web2')).token);
      const hs = new AgentHandshake({
        identity,
        controllerKey,
        software: 'test',
        enroll: { tokenId: victim.id, tokenKey: generateIdentity() },
      });
      const rc = await rawClient(c);
      rc.send(hs.hello());
      let refusedWith: string | undefined;
      try {
        rc.send(hs.onWelcome((await rc.nextFrame()).data));
        const channel = new Channel<AgentMessage, ControllerMessage>({
          socket: rc.ws,
          session: hs.session(),
          decode: decodeControllerMessage,
        });
        rc.ws.on('message', (data) => channel.receive(data as Buffer));
        const sshKey = (await readFile(`${hostKeyFile}.pub`, 'utf8')).trim();
        await channel.request({ type: 'enroll', sshKey }).catch((err: unknown) => {
          refusedWith = err instanceof BorgpullError ? err.code : String(err);
        });
      } catch (err) {
        refusedWith = (err as BorgpullError).code;
      }
      expect((await c.agents()).map((a) => a.name)).toEqual(['web1']);
      expect(refusedWith).toBe('E_AUTH_TOKEN');
    });

    it('agent enroll --force makes new keys, so a revoked machine can enroll again', async () => {
      const c = await startController();
      const dir = await enrollAgent(c, 'web1');
      const oldKey = parseIdentity(await readFile(join(dir, 'identity.json'), 'utf8')).publicKey;
      expect((await c.run('agents', 'revoke', 'web1')).exitCode).toBe(0);
      const again = await enrollCli((await c.token('web1')).token, dir, '--force');
      expect(again.stderr).toBe('');
      expect(again.exitCode).toBe(0);
      const newKey = parseIdentity(await readFile(join(dir, 'identity.json'), 'utf8')).publicKey;
      expect(Buffer.from(newKey).equals(Buffer.from(oldKey))).toBe(false);
    });
  });

  describe('CLI errors: one line on stderr, no stack, non-zero exit', () => {
    it('for bad arguments, missing state and a daemon that is not running', async () => {
      const c = new Controller(join(tmp, `controller-${++seq}`));
      const port = await freePort();
      const init = await c.run('init', '--url', `ws://127.0.0.1:${port}`, '--ssh-host-key', `${hostKeyFile}.pub`);
      expect(init.exitCode, init.stderr).toBe(0);

      const cases: Array<[string, Promise<CliResult>, RegExp, number]> = [
        ['controller unknown flag', cli(CONTROLLER_BIN, ['agents', '--bogus', '--state-dir', c.dir]), /^controller: .*'--bogus'/, 2],
        ['controller unknown command', cli(CONTROLLER_BIN, ['frobnicate']), /^controller: unknown command 'frobnicate'/, 2],
        ['agent unknown flag', cli(AGENT_BIN, ['run', '--bogus', '--state-dir', c.dir]), /^agent: .*'--bogus'/, 2],
        [
          'agents with a missing state dir',
          cli(CONTROLLER_BIN, ['agents', '--state-dir', '/nonexistent/borgpull']),
          /^controller: no controller state in \/nonexistent\/borgpull: run 'controller init/,
          1,
        ],
        [
          'serve with a missing state dir',
          cli(CONTROLLER_BIN, ['serve', '--state-dir', '/nonexistent/borgpull']),
          /^controller: no controller state in \/nonexistent\/borgpull/,
          1,
        ],
        ['token with the daemon down', c.run('token', 'web1'), /^controller: the controller daemon is not running/, 1],
        ['agents with the daemon down', c.run('agents'), /^controller: the controller daemon is not running/, 1],
        ['init twice', c.run('init', '--url', `ws://127.0.0.1:${port}`), /^controller: .* is already initialized/, 1],
        [
          'init without --url',
          cli(CONTROLLER_BIN, ['init', '--state-dir', join(tmp, `x-${++seq}`)]),
          /^controller: controller init needs --url/,
          2,
        ],
        [
          'agent status, not enrolled',
          cli(AGENT_BIN, ['status', '--state-dir', '/nonexistent/agent']),
          /^agent: this agent is not enrolled/,
          1,
        ],
        ['agent run, not enrolled', cli(AGENT_BIN, ['run', '--state-dir', '/nonexistent/agent']), /^agent: this agent is not enrolled/, 1],
        [
          'malformed token',
          cli(AGENT_BIN, ['enroll', 'bpt1.garbage', '--state-dir', join(tmp, `x-${++seq}`)]),
          /^agent: malformed enrollment token$/,
          1,
        ],
      ];
      const results = await Promise.all(cases.map(([, p]) => p));
      cases.forEach(([name, , re, code], i) => {
        const r = results[i]!;
        expect(oneLineError(r), name).toMatch(re);
        expect(r.exitCode, name).toBe(code);
      });
    });

    it('-h/--help on every command and subcommand prints its usage and never runs it', async () => {
      const missing = join(tmp, `never-created-${++seq}`);
      const cases: Array<[string, string[], RegExp]> = [
        ['backup', ['backup', 'pc1', '-h'], /^usage: controller backup/],
        ['backup --all', ['backup', '--all', '--help'], /^usage: controller backup/],
        ['restore', ['restore', 'pc1', 'arch', '--target', '/', '--yes', '-h'], /^usage: controller restore/],
        ['init', ['init', '--url', 'ws://127.0.0.1:1', '--help'], /^usage: controller init/],
        ['serve', ['serve', '-h'], /^usage: controller serve/],
        ['token', ['token', 'web1', '-h'], /^usage: controller token/],
        ['agents revoke', ['agents', 'revoke', 'pc1', '-h'], /^usage: controller agents/],
        ['archives', ['archives', 'pc1', '--help'], /^usage: controller archives/],
        ['jobs', ['jobs', '-h'], /^usage: controller jobs/],
        ['check', ['check', '-h'], /^usage: controller check/],
      ];
      const agentCases: Array<[string, string[], RegExp]> = [
        ['agent enroll', ['enroll', 'bpt1.whatever', '--help'], /^usage: agent enroll/],
        ['agent run', ['run', '-h'], /^usage: agent run/],
        ['agent status', ['status', '-h'], /^usage: agent status/],
        ['agent restores', ['restores', 'off', '--help'], /^usage: agent restores/],
      ];
      const results = await Promise.all([
        ...cases.map(([, args]) => cli(CONTROLLER_BIN, [...args, '--state-dir', missing])),
        ...agentCases.map(([, args]) => cli(AGENT_BIN, [...args, '--state-dir', missing])),
      ]);
      [...cases, ...agentCases].forEach(([name, , re], i) => {
        const r = results[i]!;
        expect(r.stdout, name).toMatch(re);
        expect(r.stderr, name).toBe('');
        expect(r.exitCode, name).toBe(0);
      });
      // Nothing ran: init and enroll would have created the state dir.
      expect(existsSync(missing)).toBe(false);
    });

    it('for refusals by a running daemon', async () => {
      const c = await startController();
      const dir = await enrollAgent(c, 'web1');
      const cases: Array<[string, Promise<CliResult>, RegExp]> = [
        [
          'second serve on the same state dir',
          cli(CONTROLLER_BIN, ['serve', '--state-dir', c.dir]),
          /^controller: a controller is already running/,
        ],
        ['token for a taken name', c.run('token', 'web1'), /^controller: agent 'web1' is already enrolled; revoke it first/],
        ['token with a bad name', c.run('token', 'no/slash'), /^controller: invalid agent name 'no\/slash'/],
        ['token with a bad ttl', c.run('token', 'web2', '--ttl', 'soon'), /^controller: --ttl must be minutes/],
        ['revoke an unknown agent', c.run('agents', 'revoke', 'ghost'), /^controller: no agent named 'ghost'/],
        ['enroll twice', enrollCli((await c.token('web2')).token, dir), /^agent: already enrolled .*--force/],
      ];
      const results = await Promise.all(cases.map(([, p]) => p));
      cases.forEach(([name, , re], i) => expect(oneLineError(results[i]!), name).toMatch(re));
      expect(c.serve.running).toBe(true);
    });
  });

  // Last, so that the fixture's 10 s handshake deadline has (mostly) run out.
  it('cuts off garbage peers with a clear code while the enrolled agent stays connected', async () => {
    const { c, agent, before, agentFrom, silent, stalled } = slow!;
    const controllerKey = controllerKeyOf(c);

    type Case = { name: string; send: (rc: RawClient) => void; close: number; code: string };
    const cases: Case[] = [
      { name: 'random bytes', send: (rc) => rc.send(randomBytes(512)), close: 1008, code: 'E_PROTO_DECODE' },
      {
        name: 'truncated msgpack',
        send: (rc) => {
          const hello = new AgentHandshake({ identity: generateIdentity(), controllerKey, software: 'test' }).hello();
          rc.send(hello.subarray(0, hello.length - 9));
        },
        close: 1008,
        code: 'E_PROTO_DECODE',
      },
      { name: 'text frame', send: (rc) => rc.send('{"type":"hello"}', false), close: 1008, code: 'E_PROTO_DECODE' },
      {
        // Within the pre-auth byte budget (8 KiB) but over the handshake frame limit (4 KiB): never decoded.
        name: 'hello padded to 5 KiB',
        send: (rc) =>
          rc.send(
            new Packr({ useRecords: false }).pack({
              ...(unpack(new AgentHandshake({ identity: generateIdentity(), controllerKey, software: 'test' }).hello()) as object),
              pad: Buffer.alloc(5000),
            }),
          ),
        close: 1008,
        code: 'E_PROTO_FRAME_TOO_LARGE',
      },
      {
        name: 'auth before hello',
        send: (rc) => rc.send(encodeMessage({ type: 'auth', sig: randomBytes(64) })),
        close: 1008,
        code: 'E_PROTO_UNEXPECTED',
      },
      {
        name: 'unknown agent key',
        send: (rc) => rc.send(new AgentHandshake({ identity: generateIdentity(), controllerKey, software: 'test' }).hello()),
        close: 1008,
        code: 'E_AUTH_UNKNOWN_KEY',
      },
    ];
    await Promise.all(
      cases.map(async (k) => {
        const rc = await rawClient(c);
        k.send(rc);
        const closed = await rc.closed();
        expect(closed, k.name).toEqual({ code: k.close, reason: k.code });
        expect((await rejection(c, rc)).code, k.name).toBe(k.code);
        // The wire error is {type, code, message}: no stack.
        const err = decodeHandshake(rc.frames[0]!.data);
        expect(err, k.name).toMatchObject({ type: 'error', code: k.code });
        expect(Object.keys(err).sort(), k.name).toEqual(['code', 'message', 'type']);
      }),
    );

    // Past the pre-auth byte budget: cut off while it is still arriving (1009).
    const huge = await rawClient(c);
    huge.send(Buffer.alloc(5 * 1024 * 1024, 0xc0));
    expect((await huge.closed()).code).toBe(1009);

    const [silentLog, stalledLog] = await Promise.all(
      [silent, stalled].map((rc) =>
        c.serve.waitForLog({ msg: 'handshake deadline passed, closing', peer: rc.peer, code: 'E_PROTO_TIMEOUT' }, { timeoutMs: 15_000 }),
      ),
    );
    expect(silentLog!['step']).toBe('hello');
    expect(stalledLog!['step']).toBe('auth');
    expect((await silent.closed()).code).toBe(1006);
    expect((await stalled.closed()).code).toBe(1006);

    const after = await c.agent('steady');
    expect(after).toMatchObject({ connected: true, since: before.since, address: before.address });
    expect(agent.find({ msg: 'agent state' }, agentFrom)).toBeUndefined();
    expect(c.serve.find({ msg: 'agent disconnected' })).toBeUndefined();
  });
});
