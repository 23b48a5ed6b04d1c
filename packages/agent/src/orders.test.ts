import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentMessage, Channel, ControllerMessage } from '@borgpull/protocol';
import { OrderHandler } from './orders.js';
import { agentPaths, type AgentPaths, type Enrollment } from './state.js';

/** A channel that records what the agent sends: the module under test is the order dispatch. */
function fakeChannel(sent: AgentMessage[]): Channel<AgentMessage, ControllerMessage> {
  return {
    notify: (m: AgentMessage) => sent.push(m),
    reply: (m: AgentMessage) => sent.push(m),
    close: () => undefined,
  } as unknown as Channel<AgentMessage, ControllerMessage>;
}

const enrollment: Enrollment = {
  name: 'pc1',
  url: 'ws://127.0.0.1:1',
  controllerKey: 'x',
  tunnel: { sshHost: '127.0.0.1', sshPort: 22, user: 'borgpull', port: 40001, hostKey: 'ssh-ed25519 AAAA' },
  authorizedKeys: '/nonexistent',
  enrolledAt: 0,
};

/** Every path under dir, with its type: what "writes nothing" is checked against. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(dir, r));
      out.push(`${r}${st.isSymbolicLink() ? '@' : st.isDirectory() ? '/' : ''}`);
      if (st.isDirectory() && !st.isSymbolicLink()) walk(r);
    }
  };
  walk('');
  return out;
}

interface Logged {
  result: string;
  refused: boolean;
  target: string;
  reason?: string;
  archive?: string;
  paths?: string[];
  bytes: number;
}

function records(p: AgentPaths): Logged[] {
  return readFileSync(p.restoreLog, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Logged);
}

describe('restore orders under the client restore policy (the controller is the hostile peer)', () => {
  let base: string;
  let fs: string; // the "client file system" the controller aims at
  let allowed: string;
  let p: AgentPaths;
  let sent: AgentMessage[];
  let orders: OrderHandler;

  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), 'bp-orders-'));
    fs = join(base, 'fs');
    allowed = join(fs, 'srv', 'restore');
    mkdirSync(join(fs, 'etc'), { recursive: true });
    writeFileSync(join(fs, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
    mkdirSync(allowed, { recursive: true });
    p = agentPaths(join(base, 'state'));
    mkdirSync(p.root, { mode: 0o700 });
    sent = [];
    orders = new OrderHandler(fakeChannel(sent), p, enrollment, pino({ level: 'silent' }));
  });
  afterEach(async () => {
    await orders.sessionEnded('test over');
    rmSync(base, { recursive: true, force: true });
  });

  const setPolicy = (restores: unknown): void => writeFileSync(p.restorePolicy, JSON.stringify({ restores }));

  /** Sends one order and waits for the agent's reply to it. */
  async function order(msg: ControllerMessage & { id: number }): Promise<AgentMessage> {
    orders.handle(msg);
    return reply(msg.id);
  }
  async function reply(id: number): Promise<AgentMessage> {
    for (let i = 0; i < 500; i++) {
      const r = sent.find((m) => 'id' in m && m.id === id);
      if (r) return r;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`no reply to order ${id}`);
  }

  const begin = (id: number, target: string, extra: Partial<ControllerMessage & { type: 'restore.begin' }> = {}) =>
    order({ type: 'restore.begin', id, stream: id, target, ...extra });

  const tunnelOrder = { sshHost: '127.0.0.1', sshPort: 1, user: 'borgpull', port: 40001, hostKey: 'ssh-ed25519 AAAA' };

  it('refuses a tunnel order without an SFTP secret (an older or hostile controller): no ssh, no socket', async () => {
    const r = await order({ type: 'tunnel.open', id: 90, ...tunnelOrder });
    expect(r).toMatchObject({ type: 'error', id: 90, code: 'E_TUNNEL_NO_SECRET' });
    expect(existsSync(p.sftpSocket)).toBe(false);
  });

  it('removes the SFTP socket when the tunnel cannot be opened', async () => {
    const r = await order({ type: 'tunnel.open', id: 91, ...tunnelOrder, sftpSecret: Buffer.alloc(32, 1) });
    expect(r).toMatchObject({ type: 'error', id: 91, code: 'E_TUNNEL_FAILED' });
    expect(existsSync(p.sftpSocket)).toBe(false);
  });

  const hostile: Array<[string, () => string]> = [
    ['a target outside the allowed dirs', () => join(fs, 'etc')],
    ['a new directory outside the allowed dirs', () => join(fs, 'elsewhere')],
    ["'..' out of the allowed dir", () => `${allowed}/../../etc`],
    ["'..' that lands back inside", () => `${allowed}/../restore/x`],
    ['a prefix that is not a path component', () => `${allowed}-evil`],
    ['a relative target', () => 'srv/restore'],
    ['a huge target', () => `${allowed}/${'a'.repeat(5000)}`],
    ['control characters', () => `${fs}/etc\n\u001b]0;owned\u0007`],
  ];

  it.each(hostile)('refuses %s under a DIR policy, writes nothing, records it', async (_name, target) => {
    setPolicy([allowed]);
    const before = tree(base);
    const reply = await begin(1, target());
    expect(reply).toMatchObject({ type: 'error', id: 1, code: 'E_RESTORE_REFUSED' });
    expect(tree(base).filter((x) => !x.startsWith('state/'))).toEqual(before.filter((x) => !x.startsWith('state/')));
    const [rec, ...more] = records(p);
    expect(more).toEqual([]);
    expect(rec).toMatchObject({ result: 'refused', refused: true });
    // Stored escaped: no control character from the controller reaches the record.
    expect(JSON.parse(JSON.stringify(rec))).toEqual(rec);
    expect(rec!.target).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
    expect(rec!.target.length).toBeLessThanOrEqual(1100);
  });

  for (const owner of [0, 1000]) {
    it(`refuses a component below DIR that is a symlink to etc (link owned by uid ${owner})`, async () => {
      setPolicy([allowed]);
      symlinkSync(join(fs, 'etc'), join(allowed, 'docs'));
      lchownSync(join(allowed, 'docs'), owner, owner);
      const before = tree(base);
      for (const [i, target] of [join(allowed, 'docs'), join(allowed, 'docs', 'sub', 'deeper')].entries()) {
        const reply = await begin(i + 1, target);
        expect(reply).toMatchObject({ type: 'error', code: 'E_RESTORE_REFUSED' });
        expect(reply.type === 'error' && reply.message).toMatch(/symbolic link/);
      }
      expect(tree(base).filter((x) => !x.startsWith('state/'))).toEqual(before.filter((x) => !x.startsWith('state/')));
      expect(readdirSync(join(fs, 'etc'))).toEqual(['passwd']);
      expect(records(p).map((r) => r.result)).toEqual(['refused', 'refused']);
    });
  }

  it("refuses everything with 'off', even a target in a formerly allowed dir", async () => {
    setPolicy('off');
    const before = tree(base);
    const reply = await begin(1, join(allowed, 'x'));
    expect(reply).toMatchObject({ type: 'error', code: 'E_RESTORE_REFUSED' });
    expect(reply.type === 'error' && reply.message).toMatch(/off/);
    expect(tree(base).filter((x) => !x.startsWith('state/'))).toEqual(before.filter((x) => !x.startsWith('state/')));
    expect(records(p)).toMatchObject([{ result: 'refused', refused: true }]);
  });

  it('refuses everything when the policy file is damaged (fails closed)', async () => {
    writeFileSync(p.restorePolicy, '{"restores": ["relative"]}');
    const reply = await begin(1, join(allowed, 'x'));
    expect(reply).toMatchObject({ type: 'error', code: 'E_RESTORE_REFUSED' });
    expect(() => lstatSync(join(allowed, 'x'))).toThrow();
  });

  it('restores inside an allowed dir (new tail directories are fine) and records archive, paths, bytes, result', async () => {
    setPolicy([allowed]);
    const src = join(base, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'f.txt'), 'hello\n');
    const tar = execFileSync('tar', ['-c', '-f', '-', '-C', src, 'f.txt']);
    const target = join(allowed, 'new', 'dir');
    const ok = await begin(1, target, { archive: 'pc1-2026\u001b[31m', paths: ['home/alice', 'x\ny'] });
    expect(ok).toMatchObject({ type: 'ok', id: 1 });
    orders.data(1, tar);
    const res = await order({
      type: 'restore.end',
      id: 2,
      stream: 1,
      bytes: tar.length,
      sha256: createHash('sha256').update(tar).digest(),
    });
    expect(res).toMatchObject({ type: 'restore.result', ok: true });
    expect(readFileSync(join(target, 'f.txt'), 'utf8')).toBe('hello\n');
    const recs = records(p);
    expect(recs.map((r) => r.result)).toEqual(['started', 'ok']);
    expect(recs[1]).toMatchObject({
      refused: false,
      bytes: tar.length,
      archive: 'pc1-2026\\x1b[31m',
      paths: ['home/alice', 'x\\x0ay'],
      target,
    });
    expect(statSync(p.restoreLog).mode & 0o777).toBe(0o600);
  });

  it("follows a policy change at once, and 'anywhere' allows any absolute target", async () => {
    setPolicy('off');
    expect(await begin(1, join(fs, 'a'))).toMatchObject({ type: 'error', code: 'E_RESTORE_REFUSED' });
    setPolicy('anywhere');
    expect(await begin(2, join(fs, 'a'))).toMatchObject({ type: 'ok' });
    orders.handle({ type: 'restore.abort', stream: 2, reason: 'borg failed\u001b[2J' });
    for (let i = 0; i < 500 && records(p).length < 3; i++) await new Promise((r) => setTimeout(r, 10));
    const recs = records(p);
    expect(recs.map((r) => r.result)).toEqual(['refused', 'started', 'aborted']);
    expect(recs[2]!.reason).toBe('aborted by the controller: borg failed\\x1b[2J');
  });

  it('answers a second order for an open stream as busy, and keeps the first', async () => {
    orders.handle({ type: 'restore.begin', id: 1, stream: 9, target: join(fs, 'c') });
    const second = await begin(2, join(fs, 'd'), { stream: 9 });
    expect(second).toMatchObject({ type: 'error', code: 'E_RESTORE_BUSY' });
    expect(await reply(1)).toMatchObject({ type: 'ok', id: 1 });
    expect(() => lstatSync(join(fs, 'd'))).toThrow();
  });

  it('records a restore still running when the session ends as aborted', async () => {
    expect(await begin(1, join(fs, 'b'))).toMatchObject({ type: 'ok' });
    await orders.sessionEnded('connection lost');
    expect(records(p).map((r) => r.result)).toEqual(['started', 'aborted']);
  });
});
