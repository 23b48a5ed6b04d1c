import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_API, MAX_BACKUP_NAMES, type AdminApi, type Handlers } from './api.js';
import { AdminClient } from './client.js';
import { AdminServer } from './server.js';
import { adminSocketPath, MAX_REQUEST_BYTES } from './wire.js';

const log = pino({ level: 'silent' });

/** Sends raw bytes as one admin connection; every reply line, parsed, until the server closes it. */
function exchange(path: string, bytes: string | Buffer): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    let buf = '';
    s.setEncoding('utf8');
    s.on('connect', () => s.write(bytes));
    s.on('data', (c: string) => (buf += c));
    s.on('error', reject);
    s.on('close', () => {
      try {
        resolve(
          buf
            .split('\n')
            .filter(Boolean)
            .map((l): unknown => JSON.parse(l)),
        );
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

const names = (n: number): string[] => Array.from({ length: n }, (_, i) => `a${i}`);
const nested = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);

/** Each line a local root (or a bug in a script calling the socket) could send, and the code it must get. */
const HOSTILE: Array<[string, string | Buffer, string]> = [
  ['not JSON', '{cmd: backup}\n', 'E_ADMIN_JSON'],
  ['an empty line', '\n', 'E_ADMIN_JSON'],
  ['invalid UTF-8', Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x0a]), 'E_ADMIN_JSON'],
  ['JSON null', 'null\n', 'E_ADMIN_REQUEST'],
  ['a string', '"backup"\n', 'E_ADMIN_REQUEST'],
  ['a number', '42\n', 'E_ADMIN_REQUEST'],
  ['an array instead of an object', '[{"cmd":"agents","args":{}}]\n', 'E_ADMIN_REQUEST'],
  ['deeply nested arrays', `${nested(5000)}\n`, 'E_ADMIN_REQUEST'],
  ['no cmd', '{"args":{}}\n', 'E_ADMIN_ARGS'],
  ['cmd not a string', '{"cmd":["backup"],"args":{}}\n', 'E_ADMIN_ARGS'],
  ['cmd with a newline escape', '{"cmd":"agents\\n","args":{}}\n', 'E_ADMIN_ARGS'],
  ['a huge cmd', `{"cmd":"${'x'.repeat(60_000)}"}\n`, 'E_ADMIN_ARGS'],
  ['unknown command', '{"cmd":"shell","args":{"line":"rm -rf /"}}\n', 'E_ADMIN_UNKNOWN_COMMAND'],
  ['an inherited name as command', '{"cmd":"toString","args":{}}\n', 'E_ADMIN_UNKNOWN_COMMAND'],
  ['__proto__ as command', '{"cmd":"__proto__","args":{}}\n', 'E_ADMIN_UNKNOWN_COMMAND'],
  ['constructor as command', '{"cmd":"constructor","args":{}}\n', 'E_ADMIN_UNKNOWN_COMMAND'],
  ['an extra request field', '{"cmd":"agents","args":{},"sudo":true}\n', 'E_ADMIN_REQUEST'],
  ['__proto__ in the request', '{"cmd":"agents","__proto__":{"args":{"x":1}}}\n', 'E_ADMIN_REQUEST'],
  ['args an array', '{"cmd":"jobs","args":[20]}\n', 'E_ADMIN_REQUEST'],
  ['args a string', '{"cmd":"jobs","args":"limit=20"}\n', 'E_ADMIN_REQUEST'],
  ['__proto__ in args', '{"cmd":"agents","args":{"__proto__":{"polluted":true}}}\n', 'E_ADMIN_ARGS'],
  ['an extra argument', '{"cmd":"jobs","args":{"limit":5,"all":true}}\n', 'E_ADMIN_ARGS'],
  ['limit a string', '{"cmd":"jobs","args":{"limit":"5"}}\n', 'E_ADMIN_ARGS'],
  ['limit a fraction', '{"cmd":"jobs","args":{"limit":2.5}}\n', 'E_ADMIN_ARGS'],
  ['limit negative', '{"cmd":"jobs","args":{"limit":-1}}\n', 'E_ADMIN_ARGS'],
  ['limit 1e300', '{"cmd":"jobs","args":{"limit":1e300}}\n', 'E_ADMIN_ARGS'],
  ['agent filter an object', '{"cmd":"jobs","args":{"agent":{"toString":1}}}\n', 'E_ADMIN_ARGS'],
  ['agent filter a path', '{"cmd":"jobs","args":{"agent":"../etc"}}\n', 'E_CONFIG_NAME'],
  ['kind outside the set', '{"cmd":"jobs","args":{"kind":"shell"}}\n', 'E_ADMIN_ARGS'],
  ['kind an inherited name', '{"cmd":"jobs","args":{"kind":"constructor"}}\n', 'E_ADMIN_ARGS'],
  ['status a string', '{"cmd":"jobs","args":{"status":"failed"}}\n', 'E_ADMIN_ARGS'],
  ['status outside the set', '{"cmd":"jobs","args":{"status":["failed","pwned"]}}\n', 'E_ADMIN_ARGS'],
  ['status list too long', '{"cmd":"jobs","args":{"status":["failed","failed","failed","failed","failed","failed"]}}\n', 'E_ADMIN_ARGS'],
  ['since negative', '{"cmd":"jobs","args":{"since":-1}}\n', 'E_ADMIN_ARGS'],
  ['since past year 9999', '{"cmd":"jobs","args":{"since":1e300}}\n', 'E_ADMIN_ARGS'],
  ['since a string', '{"cmd":"jobs","args":{"since":"1d"}}\n', 'E_ADMIN_ARGS'],
  ['names a string', '{"cmd":"backup","args":{"names":"pc1"}}\n', 'E_ADMIN_ARGS'],
  ['names with a number', '{"cmd":"backup","args":{"names":["pc1",7]}}\n', 'E_ADMIN_ARGS'],
  ['names and all', '{"cmd":"backup","args":{"names":["pc1"],"all":true}}\n', 'E_USAGE'],
  ['all a string', '{"cmd":"backup","args":{"all":"yes"}}\n', 'E_ADMIN_ARGS'],
  ['a path as agent name', '{"cmd":"backup","args":{"names":["../../etc"]}}\n', 'E_CONFIG_NAME'],
  ['too many names', `${JSON.stringify({ cmd: 'backup', args: { names: names(MAX_BACKUP_NAMES + 1) } })}\n`, 'E_ADMIN_ARGS'],
  ['a huge agent name', `${JSON.stringify({ cmd: 'archives', args: { name: 'a'.repeat(50_000) } })}\n`, 'E_ADMIN_ARGS'],
  ['token for a bad name', '{"cmd":"token","args":{"name":"no/slash"}}\n', 'E_CONFIG_NAME'],
  ['token ttl a string', '{"cmd":"token","args":{"name":"pc1","ttlMs":"1h"}}\n', 'E_ADMIN_ARGS'],
  ['token ttl of a year', '{"cmd":"token","args":{"name":"pc1","ttlMs":31536000000}}\n', 'E_ADMIN_ARGS'],
  ['revoke without a name', '{"cmd":"revoke","args":{}}\n', 'E_ADMIN_ARGS'],
  ['restore, relative target', '{"cmd":"restore","args":{"agent":"pc1","archive":"a","target":"tmp"}}\n', 'E_RESTORE_TARGET'],
  ['restore, .. in target', '{"cmd":"restore","args":{"agent":"pc1","archive":"a","target":"/srv/../etc"}}\n', 'E_RESTORE_TARGET'],
  [
    'restore, control character in target',
    '{"cmd":"restore","args":{"agent":"pc1","archive":"a","target":"/srv\\u001b[2J"}}\n',
    'E_ADMIN_ARGS',
  ],
  ['restore, .. in a path', '{"cmd":"restore","args":{"agent":"pc1","archive":"a","paths":["etc/../../x"]}}\n', 'E_USAGE'],
  ['restore, unknown method', '{"cmd":"restore","args":{"agent":"pc1","archive":"a","method":"rsync"}}\n', 'E_USAGE'],
  ['restore, archive with a slash', '{"cmd":"restore","args":{"agent":"pc1","archive":"a/b"}}\n', 'E_USAGE'],
  ['restore, dryRun a string', '{"cmd":"restore","args":{"agent":"pc1","archive":"a","dryRun":"false"}}\n', 'E_ADMIN_ARGS'],
  ['restore, paths an object', '{"cmd":"restore","args":{"agent":"pc1","archive":"a","paths":{"0":"etc"}}}\n', 'E_ADMIN_ARGS'],
  [
    'restore, too many paths',
    `${JSON.stringify({ cmd: 'restore', args: { agent: 'pc1', archive: 'a', paths: names(1025) } })}\n`,
    'E_ADMIN_ARGS',
  ],
  ['prune, a path as agent name', '{"cmd":"prune","args":{"name":"../pc1"}}\n', 'E_CONFIG_NAME'],
  ['prune, dryRun a string', '{"cmd":"prune","args":{"name":"pc1","dryRun":"true"}}\n', 'E_ADMIN_ARGS'],
  // The keep rules are the config's: a request cannot bring its own.
  ['prune, rules of its own', '{"cmd":"prune","args":{"name":"pc1","keepDaily":0}}\n', 'E_ADMIN_ARGS'],
  ['prune without a name', '{"cmd":"prune","args":{"dryRun":true}}\n', 'E_ADMIN_ARGS'],
  ['verify, names and all', '{"cmd":"verify","args":{"names":["pc1"],"all":true}}\n', 'E_USAGE'],
  ['verify, a path as agent name', '{"cmd":"verify","args":{"names":["pc1","/etc"]}}\n', 'E_CONFIG_NAME'],
  ['verify, extra borg flags', '{"cmd":"verify","args":{"names":["pc1"],"repair":true}}\n', 'E_ADMIN_ARGS'],
  ['a 64 KiB+ line', `${JSON.stringify({ cmd: 'agents', args: { pad: 'x'.repeat(MAX_REQUEST_BYTES) } })}\n`, 'E_ADMIN_TOO_LARGE'],
  ['64 KiB+ and no newline', 'x'.repeat(MAX_REQUEST_BYTES + 10), 'E_ADMIN_TOO_LARGE'],
];

describe('the admin API at the socket: hostile request lines', () => {
  let state: string;
  let path: string;
  let server: AdminServer<AdminApi>;
  /** What each handler was called with: a malformed request must never reach one. */
  const calls: Array<[string, unknown]> = [];
  const record =
    <R>(cmd: string, result: R) =>
    (args: unknown): Promise<R> => {
      calls.push([cmd, args]);
      return Promise.resolve(result);
    };
  const handlers: Handlers<AdminApi> = {
    token: record('token', { token: 't', expiresAt: 1 }),
    agents: record('agents', []),
    revoke: record('revoke', { name: 'pc1', revokedAt: 1 }),
    backup: record('backup', []),
    restore: record('restore', { id: 'j', kind: 'restore', agent: 'pc1', startedAt: 1, status: 'succeeded' }),
    archives: record('archives', []),
    jobs: record('jobs', []),
    prune: record('prune', { agent: 'pc1', rules: [], archives: [] }),
    verify: record('verify', []),
  };

  beforeAll(async () => {
    state = mkdtempSync(join(tmpdir(), 'bp-admin-api-'));
    writeFileSync(join(state, 'config.json'), '{}');
    path = adminSocketPath(state);
    server = new AdminServer(path, ADMIN_API, handlers, log);
    await server.start();
  });

  afterAll(async () => {
    await server.stop();
    rmSync(state, { recursive: true, force: true });
  });

  it.each(HOSTILE)('%s: one error reply with a code, no handler called, the server keeps serving', async (_name, line, code) => {
    calls.length = 0;
    const replies = await exchange(path, line);
    expect(replies).toHaveLength(1);
    expect(replies[0]).toMatchObject({ ok: false, code });
    expect((replies[0] as { message: unknown }).message).toEqual(expect.any(String));
    expect(calls).toEqual([]);
    await expect(new AdminClient(path, ADMIN_API).call('agents', {})).resolves.toEqual([]);
    expect(calls).toEqual([['agents', {}]]);
  });

  it('hands each handler a fresh copy of exactly the declared arguments', async () => {
    calls.length = 0;
    const client = new AdminClient(path, ADMIN_API);
    await client.call('jobs', { limit: 5 });
    await client.call('jobs', { limit: 7, agent: 'pc1', kind: 'backup', status: ['failed', 'offline'], since: 1000 });
    await client.call('backup', { all: false, names: ['pc1', 'pc2'] });
    await client.call('restore', {
      agent: 'pc1',
      archive: 'pc1-2026',
      paths: ['/etc/hosts'],
      method: 'extract',
      target: '/srv',
      dryRun: true,
    });
    await client.call('token', { name: 'web1' });
    expect(calls).toEqual([
      ['jobs', { limit: 5, agent: undefined }],
      ['jobs', { limit: 7, agent: 'pc1', kind: 'backup', status: ['failed', 'offline'], since: 1000 }],
      ['backup', { all: false, names: ['pc1', 'pc2'] }],
      // borg stores paths without a leading slash
      ['restore', { agent: 'pc1', archive: 'pc1-2026', paths: ['etc/hosts'], method: 'extract', target: '/srv', dryRun: true }],
      ['token', { name: 'web1', ttlMs: undefined }],
    ]);
    // Defaults are the reader's: a request without them means the documented ones.
    calls.length = 0;
    await exchange(path, '{"cmd":"jobs"}\n');
    await exchange(path, '{"cmd":"restore","args":{"agent":"pc1","archive":"a"}}\n');
    expect(calls).toEqual([
      ['jobs', { limit: 20, agent: undefined }],
      ['restore', { agent: 'pc1', archive: 'a', paths: [], method: 'stream', target: '/', dryRun: false }],
    ]);
  });

  it('answers a handler that throws something that is not an error with E_INTERNAL, and keeps serving', async () => {
    const odd = new AdminServer(
      join(state, 'odd', 'admin.sock'),
      ADMIN_API,
      { ...handlers, agents: () => Promise.reject(new TypeError('boom')) },
      log,
    );
    await odd.start();
    try {
      expect(await exchange(join(state, 'odd', 'admin.sock'), '{"cmd":"agents","args":{}}\n')).toEqual([
        { ok: false, code: 'E_INTERNAL', message: 'boom' },
      ]);
      expect(await exchange(join(state, 'odd', 'admin.sock'), '{"cmd":"jobs","args":{}}\n')).toEqual([{ ok: true, result: [] }]);
    } finally {
      await odd.stop();
    }
  });
});
