import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADMIN_API } from './api.js';
import { AdminClient } from './client.js';
import { adminSocketPath } from './wire.js';

/**
 * A "daemon" that answers every request with the given bytes and then closes:
 * the typed client must turn anything that is not the protocol into an error
 * with a code (never an exception thrown out of a socket handler).
 */
async function fakeDaemon(path: string, reply: string): Promise<Server> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const server = createServer((s) => {
    s.on('error', () => undefined);
    s.once('data', () => s.end(reply));
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return server;
}

const GARBAGE: Array<[string, string, string]> = [
  ['a line that is not JSON', 'this is not json\n', 'E_DAEMON_REPLY'],
  ['a truncated JSON line', '{"ok":true,"result":[\n', 'E_DAEMON_REPLY'],
  ['a JSON array', '[1,2,3]\n', 'E_DAEMON_REPLY'],
  ['JSON null', 'null\n', 'E_DAEMON_REPLY'],
  ['an object of neither kind', '{"hello":"world"}\n', 'E_DAEMON_REPLY'],
  ['ok true without a result', '{"ok":true}\n', 'E_DAEMON_REPLY'],
  ['garbage after an event', '{"event":{"agent":"pc1","jobId":"","phase":"queued"}}\n<html>\n', 'E_DAEMON_REPLY'],
  ['nothing at all', '', 'E_DAEMON_IO'],
  ['a result with no newline before close', '{"ok":true,"result":[]}', 'E_DAEMON_IO'],
  ['an error with a code that is not one', '{"ok":false,"code":"rm -rf /","message":"x"}\n', 'E_INTERNAL'],
  ['an error without a message', '{"ok":false,"code":"E_JOB_BUSY"}\n', 'E_JOB_BUSY'],
];

describe('the typed admin client against a daemon that sends garbage', () => {
  let state: string;
  let server: Server | undefined;

  beforeEach(() => {
    state = mkdtempSync(join(tmpdir(), 'bp-admin-client-'));
    writeFileSync(join(state, 'config.json'), '{}');
  });

  afterEach(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = undefined;
    rmSync(state, { recursive: true, force: true });
  });

  it.each(GARBAGE)('%s: the call fails with a code', async (_name, reply, code) => {
    const path = adminSocketPath(state);
    server = await fakeDaemon(path, reply);
    const events: unknown[] = [];
    const err = await new AdminClient(path, ADMIN_API)
      .call('backup', { all: true, names: [] }, (e) => events.push(e))
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toMatchObject({ code });
    expect(events.length).toBeLessThanOrEqual(1);
  });

  it('passes events on in order and resolves with the result', async () => {
    const path = adminSocketPath(state);
    const e1 = { agent: 'pc1', jobId: '', phase: 'queued' };
    const e2 = { agent: 'pc1', jobId: 'j1', phase: 'tunnel' };
    server = await fakeDaemon(path, `${JSON.stringify({ event: e1 })}\n${JSON.stringify({ event: e2 })}\n{"ok":true,"result":[]}\n`);
    const events: unknown[] = [];
    await expect(new AdminClient(path, ADMIN_API).call('backup', { all: true, names: [] }, (e) => events.push(e))).resolves.toEqual([]);
    expect(events).toEqual([e1, e2]);
  });
});
