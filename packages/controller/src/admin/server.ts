import { createServer, createConnection, type Server, type Socket } from 'node:net';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { asRecord, BorgpullError, errnoCode, ProtocolError, str } from '@borgpull/protocol';
import { ControllerError } from '../errors.js';
import { onlyFields, type AnyCommand, type ApiSpec, type Handlers } from './api.js';
import { MAX_REQUEST_BYTES, encodeLine, type Reply } from './wire.js';

/** A handler as the dispatcher sees it, once its command's arguments were read by that command's reader. */
type ReadHandler = (args: unknown, emit: (event: unknown) => void, signal: AbortSignal) => Promise<unknown>;

/** Makes `dir` a directory only this user can enter, refusing anything else at that path (a link, a file, another owner's). */
async function privateDir(dir: string): Promise<void> {
  await mkdir(dir, { mode: 0o700 }).catch((err: unknown) => {
    if (errnoCode(err) !== 'EEXIST') throw err;
  });
  const st = await lstat(dir);
  const uid = process.getuid?.() ?? 0;
  if (!st.isDirectory() || st.uid !== uid) {
    throw new ControllerError('E_STATE_ADMIN_DIR', `${dir} must be a directory owned by uid ${uid}: move it away and start again`);
  }
  if ((st.mode & 0o777) !== 0o700) await chmod(dir, 0o700);
}

/**
 * Reads one request line: JSON, a map with exactly `cmd` and `args`, a known
 * command, its arguments read by that command's reader. Any other line is an
 * error with a code, never a crash and never a handler call.
 */
export function readRequest<Api extends ApiSpec>(api: Api, line: string): { cmd: keyof Api & string; args: unknown } {
  let decoded: unknown;
  try {
    decoded = JSON.parse(line);
  } catch {
    throw new ControllerError('E_ADMIN_JSON', 'the request is not JSON');
  }
  try {
    const r = asRecord(decoded, 'the request');
    onlyFields(r, ['cmd', 'args'], 'E_ADMIN_REQUEST');
    const cmd = str(r, 'cmd', { max: 64, nonEmpty: true, line: true });
    const spec: AnyCommand | undefined = Object.hasOwn(api, cmd) ? api[cmd] : undefined;
    if (!spec) throw new ControllerError('E_ADMIN_UNKNOWN_COMMAND', `unknown admin command '${cmd}'`);
    const args: unknown = spec.readArgs(asRecord(r['args'] ?? {}, 'args'));
    return { cmd, args };
  } catch (err) {
    // The protocol readers' codes name a wire frame: here the same faults are a bad admin request.
    if (err instanceof ProtocolError)
      throw new ControllerError(err.code === 'E_PROTO_BAD_FIELD' ? 'E_ADMIN_ARGS' : 'E_ADMIN_REQUEST', err.message);
    throw err;
  }
}

/**
 * The daemon's side of the admin socket: newline-delimited JSON, one request
 * per connection (`{cmd, args}`), answered by any number of `{event}` lines
 * and then one `{ok:true, result}` or `{ok:false, code, message}`.
 * STATE/admin/admin.sock, in a root-only (0700) directory of its own (see wire.ts).
 */
export class AdminServer<Api extends ApiSpec> {
  private server?: Server;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly path: string,
    private readonly api: Api,
    private readonly handlers: Handlers<Api>,
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
    const send = (reply: Reply): void => {
      if (!sock.destroyed) sock.write(encodeLine(reply));
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
      const nl = buf.indexOf('\n');
      if (nl < 0 ? buf.length > MAX_REQUEST_BYTES : nl > MAX_REQUEST_BYTES) {
        handled = true;
        send({ ok: false, code: 'E_ADMIN_TOO_LARGE', message: `request longer than ${MAX_REQUEST_BYTES} bytes` });
        sock.end();
        return;
      }
      if (nl < 0) return;
      handled = true;
      void this.dispatch(buf.slice(0, nl), send, ac.signal).finally(() => sock.end());
    });
  }

  private async dispatch(line: string, send: (r: Reply) => void, signal: AbortSignal): Promise<void> {
    let cmd = '';
    try {
      const req = readRequest(this.api, line);
      cmd = req.cmd;
      // The one place the command's name picks its handler: readRequest read the arguments with that command's reader.
      const handler = this.handlers[req.cmd] as ReadHandler;
      const result = await handler(req.args, (event) => send({ event }), signal);
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
