import { chmodSync, lstatSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

/**
 * chmod of the socket is held until the test releases it: with the socket
 * made by listen() and not yet chmod-ed, that is exactly the window in which
 * another user could connect if the socket's directory let them.
 */
const gate = vi.hoisted(() => {
  let release: () => void = () => undefined;
  let held = new Promise<void>((r) => (release = r));
  return {
    wait: (): Promise<void> => held,
    release: (): void => release(),
    reset: (): void => {
      held = new Promise<void>((r) => (release = r));
    },
  };
});
vi.mock('node:fs/promises', async (importOriginal) => {
  const orig = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...orig,
    chmod: async (path: Parameters<typeof orig.chmod>[0], mode: Parameters<typeof orig.chmod>[1]) => {
      if (String(path).endsWith('.sock')) await gate.wait();
      return orig.chmod(path, mode);
    },
  };
});

const { AdminServer } = await import('./server.js');
const { AdminClient } = await import('./client.js');
const { adminSocketPath } = await import('./wire.js');
const { command, onlyFields } = await import('./api.js');

/** A one-command API for the socket's own tests. */
const PING_API = {
  ping: command<string>()((r): Record<string, never> => {
    onlyFields(r, []);
    return {};
  }),
};
const ping = { ping: () => Promise.resolve('pong') };
const call = (path: string): Promise<string> => new AdminClient(path, PING_API).call('ping', {});

const log = pino({ level: 'silent' });
const NOBODY = '65534';

/** Connects to `path` as uid/gid 65534 with no groups; prints 'connected' or the errno code. */
async function connectAsNobody(path: string): Promise<string> {
  const js = `const s=require('net').createConnection(process.argv[1]);s.on('connect',()=>{console.log('connected');s.destroy()});s.on('error',e=>console.log(e.code))`;
  const r = await execa('setpriv', ['--reuid', NOBODY, '--regid', NOBODY, '--clear-groups', process.execPath, '-e', js, path], {
    reject: false,
  });
  return r.stdout.trim() || r.stderr.trim();
}

describe('admin socket', () => {
  let state: string;
  let oldUmask: number;

  beforeEach(() => {
    gate.reset();
    state = mkdtempSync(join(tmpdir(), 'bp-admin-'));
    // As `controller init` makes it: others may traverse (sshd reads tunnel/), not list.
    chmodSync(state, 0o711);
    writeFileSync(join(state, 'config.json'), '{}');
    // The worst umask a service can run with: listen() then makes a socket anyone may connect to.
    oldUmask = process.umask(0);
  });

  afterEach(() => {
    process.umask(oldUmask);
    gate.release();
    rmSync(state, { recursive: true, force: true });
  });

  it('never lets another user connect, not even between listen() and chmod()', async () => {
    const path = adminSocketPath(state);
    const server = new AdminServer(path, PING_API, ping, log);
    const started = server.start();
    try {
      await vi.waitFor(() => expect(lstatSync(path).isSocket()).toBe(true), { timeout: 5000, interval: 5 });
      // The socket exists and its chmod is held: the window is open now, if there is one.
      expect(await connectAsNobody(path)).toBe('EACCES');
      gate.release();
      await started;
      expect(await connectAsNobody(path)).toBe('EACCES');
      await expect(call(path)).resolves.toBe('pong');
      expect(lstatSync(dirname(path)).mode & 0o777).toBe(0o700);
      expect(lstatSync(path).mode & 0o777).toBe(0o600);
    } finally {
      gate.release();
      await started.catch(() => undefined);
      await server.stop();
    }
  });

  it('tightens a looser admin directory, refuses a symlink there, and still sees a running daemon', async () => {
    gate.release();
    const path = adminSocketPath(state);
    const first = new AdminServer(path, PING_API, ping, log);
    await first.start();
    try {
      chmodSync(dirname(path), 0o755);
      await expect(new AdminServer(path, PING_API, ping, log).start()).rejects.toMatchObject({ code: 'E_DAEMON_RUNNING' });
      expect(lstatSync(dirname(path)).mode & 0o777).toBe(0o700);
    } finally {
      await first.stop();
    }
    rmSync(dirname(path), { recursive: true });
    const elsewhere = mkdtempSync(join(tmpdir(), 'bp-admin-elsewhere-'));
    try {
      const { symlinkSync } = await import('node:fs');
      symlinkSync(elsewhere, dirname(path));
      await expect(new AdminServer(path, PING_API, ping, log).start()).rejects.toMatchObject({ code: 'E_STATE_ADMIN_DIR' });
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });

  it('tells a stopped daemon from a missing state directory', async () => {
    await expect(call(adminSocketPath(state))).rejects.toMatchObject({ code: 'E_DAEMON_DOWN' });
    await expect(call(adminSocketPath(join(state, 'nope')))).rejects.toMatchObject({ code: 'E_CONFIG_MISSING' });
  });
});
