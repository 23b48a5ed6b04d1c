import { createServer, createConnection, type Server, type Socket } from 'node:net';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { BorgpullError, PeerError } from '@borgpull/protocol';
import { ControllerError } from './errors.js';

/**
 * The local admin socket the CLI talks to: newline-delimited JSON.
 * Request: {cmd, args}. Replies: any number of {event} lines, then one
 * {ok:true, result} or {ok:false, code, message}.
 */
export type AdminHandler = (args: Record<string, unknown>, emit: (event: unknown) => void, signal: AbortSignal) => Promise<unknown>;

const MAX_REQUEST = 64 * 1024;

/**
 * STATE/admin/admin.sock. The socket lives in a root-only (0700) directory of
 * its own: listen() creates it with the process's umask and only a chmod
 * after makes it 0600, a window in which another local user could connect
 * (the state dir itself is 0711 for sshd). Inside a 0700 directory there is
 * no such window, whatever the umask, and no process-wide umask to juggle.
 */
export function adminSocketPath(stateDir: string): string {
  return join(stateDir, 'admin', 'admin.sock');
}

/** The state directory an admin socket path belongs to. */
function stateDirOfSocket(path: string): string {
  return dirname(dirname(path));
}

/** Makes `dir` a directory only this user can enter, refusing anything else at that path (a link, a file, another owner's). */
async function privateDir(dir: string): Promise<void> {
  await mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  const st = await lstat(dir);
  const uid = process.getuid?.() ?? 0;
  if (!st.isDirectory() || st.uid !== uid) {
    throw new ControllerError('E_STATE_ADMIN_DIR', `${dir} must be a directory owned by uid ${uid}: move it away and start again`);
  }
  if ((st.mode & 0o777) !== 0o700) await chmod(dir, 0o700);
}

export class AdminServer {
  private server?: Server;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly path: string,
    private readonly handlers: Record<string, AdminHandler>,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await privateDir(dirname(this.path));
    // A connectable socket means another daemon owns this state directory.
    if (await isListening(this.path)) {
      throw new ControllerError('E_DAEMON_RUNNING', `a controller is already running on ${this.path}`);
    }
    await unlink(this.path).catch(() => undefined);
    const server = createServer((s) => this.serve(s));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => resolve());
    });
    // Not what keeps others out (the directory does), but the socket says what it is.
    await chmod(this.path, 0o600);
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await unlink(this.path).catch(() => undefined);
  }

  private serve(sock: Socket): void {
    this.sockets.add(sock);
    const ac = new AbortController();
    let buf = '';
    let handled = false;
    const send = (obj: unknown): void => {
      if (!sock.destroyed) sock.write(JSON.stringify(obj) + '\n');
    };
    sock.on('close', () => {
      this.sockets.delete(sock);
      ac.abort(new ControllerError('E_ADMIN_CLOSED', 'admin client went away'));
    });
    sock.on('error', () => undefined);
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      if (handled) return;
      buf += chunk;
      if (buf.length > MAX_REQUEST) {
        handled = true;
        send({ ok: false, code: 'E_ADMIN_REQUEST', message: 'request too large' });
        sock.end();
        return;
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      handled = true;
      void this.dispatch(buf.slice(0, nl), send, ac.signal).finally(() => sock.end());
    });
  }

  private async dispatch(line: string, send: (o: unknown) => void, signal: AbortSignal): Promise<void> {
    let cmd = '';
    try {
      const req = JSON.parse(line) as unknown;
      if (typeof req !== 'object' || req === null) throw new ControllerError('E_ADMIN_REQUEST', 'bad request');
      const r = req as { cmd?: unknown; args?: unknown };
      if (typeof r.cmd !== 'string' || !Object.hasOwn(this.handlers, r.cmd)) {
        throw new ControllerError('E_ADMIN_REQUEST', `unknown admin command ${String(r.cmd)}`);
      }
      cmd = r.cmd;
      const args = typeof r.args === 'object' && r.args !== null ? (r.args as Record<string, unknown>) : {};
      const handler = this.handlers[cmd]!;
      const result = await handler(args, (event) => send({ event }), signal);
      send({ ok: true, result });
    } catch (err) {
      const code = err instanceof BorgpullError ? err.code : 'E_INTERNAL';
      if (code === 'E_INTERNAL') this.log.error({ err, cmd }, 'admin command failed');
      send({ ok: false, code, message: err instanceof Error ? err.message : String(err) });
    }
  }
}

function isListening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** CLI side: sends one request, calls onEvent for each event, resolves with the result. */
export function adminRequest(
  path: string,
  cmd: string,
  args: Record<string, unknown>,
  onEvent: (event: unknown) => void = () => undefined,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    let done = false;
    sock.setEncoding('utf8');
    sock.once('connect', () => sock.write(JSON.stringify({ cmd, args }) + '\n'));
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (done) return;
      done = true;
      const stateDir = stateDirOfSocket(path);
      if (err.code === 'ENOENT' && !existsSync(join(stateDir, 'config.json'))) {
        reject(
          new ControllerError(
            'E_CONFIG_MISSING',
            `no controller state in ${stateDir}: run 'controller init --url ws://HOST:PORT' first (or pass --state-dir)`,
          ),
        );
      } else if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
        reject(new ControllerError('E_DAEMON_DOWN', `the controller daemon is not running (no ${path}): start it with 'controller serve'`));
      } else if (err.code === 'EACCES') {
        reject(new ControllerError('E_DAEMON_ACCESS', `permission denied on ${path}: run as root`));
      } else reject(new ControllerError('E_DAEMON_IO', `admin socket: ${err.message}`));
    });
    sock.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const msg = JSON.parse(line) as { event?: unknown; ok?: boolean; result?: unknown; code?: string; message?: string };
        if (msg.event !== undefined) onEvent(msg.event);
        else if (msg.ok === true) {
          done = true;
          resolve(msg.result);
        } else if (msg.ok === false) {
          done = true;
          // The daemon's code crossed the socket: a string, carried as such.
          reject(new PeerError(msg.code ?? 'E_INTERNAL', msg.message ?? 'failed'));
        }
      }
    });
    sock.on('close', () => {
      if (!done) reject(new ControllerError('E_DAEMON_IO', 'the controller daemon closed the admin connection'));
    });
  });
}
