import { createConnection } from 'node:net';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { PeerError, type BorgpullError } from '@borgpull/protocol';
import { ControllerError } from '../errors.js';
import type { ApiSpec, ArgsOf, EventOf, ResultOf } from './api.js';
import { encodeLine } from './wire.js';

/**
 * Replies a CLI takes in before it gives up on the daemon (a restore's dry
 * run lists up to 100,000 escaped paths: far below this).
 */
export const MAX_REPLY_CHARS = 256 * 1024 * 1024;

/** One reply line, read with the same care as a request: JSON, a map, one of the three shapes. */
export type ReplyLine =
  { kind: 'event'; event: unknown } | { kind: 'result'; result: unknown } | { kind: 'error'; code: string; message: string };

const CODE = /^E_[A-Z0-9_]{1,64}$/;

export function readReplyLine(line: string): ReplyLine {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch {
    throw badReply('a line that is not JSON');
  }
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) throw badReply('a line that is not a JSON object');
  const r = msg as Record<string, unknown>;
  if (Object.hasOwn(r, 'event')) return { kind: 'event', event: r['event'] };
  if (r['ok'] === true && Object.hasOwn(r, 'result')) return { kind: 'result', result: r['result'] };
  if (r['ok'] === false) {
    const code = typeof r['code'] === 'string' && CODE.test(r['code']) ? r['code'] : 'E_INTERNAL';
    const message = typeof r['message'] === 'string' ? r['message'].slice(0, 64 * 1024) : 'failed';
    return { kind: 'error', code, message };
  }
  throw badReply('a line that is neither an event nor a result');
}

function badReply(what: string): ControllerError {
  return new ControllerError('E_DAEMON_REPLY', `the controller daemon sent ${what} on the admin socket`);
}

/** What a failed connection to the admin socket means for the person at the CLI. */
function connectError(path: string, err: NodeJS.ErrnoException): ControllerError {
  // STATE/admin/admin.sock
  const stateDir = dirname(dirname(path));
  if (err.code === 'ENOENT' && !existsSync(join(stateDir, 'config.json'))) {
    return new ControllerError(
      'E_CONFIG_MISSING',
      `no controller state in ${stateDir}: run 'controller init --url ws://HOST:PORT' first (or pass --state-dir)`,
    );
  }
  if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
    return new ControllerError('E_DAEMON_DOWN', `the controller daemon is not running (no ${path}): start it with 'controller serve'`);
  }
  if (err.code === 'EACCES') return new ControllerError('E_DAEMON_ACCESS', `permission denied on ${path}: run as root`);
  return new ControllerError('E_DAEMON_IO', `admin socket: ${err.message}`);
}

/**
 * The CLI's side: `call(name, args, onEvent)` sends one request and resolves
 * with that command's declared result type. A reply line that is not what the
 * protocol says ends the call with E_DAEMON_REPLY, never an exception from
 * JSON.parse.
 */
export class AdminClient<Api extends ApiSpec> {
  constructor(
    private readonly path: string,
    // Only its types are used here: the server reads the arguments.
    readonly api: Api,
  ) {}

  call<K extends keyof Api & string>(
    cmd: K,
    args: ArgsOf<Api[K]>,
    onEvent: (event: EventOf<Api[K]>) => void = () => undefined,
  ): Promise<ResultOf<Api[K]>> {
    return new Promise((resolve, reject) => {
      const sock = createConnection(this.path);
      let buf = '';
      let done = false;
      const finish = (err: BorgpullError | undefined, result?: unknown): void => {
        if (done) return;
        done = true;
        sock.destroy();
        // The daemon answers with the result of the command it was asked: its type is the command's.
        if (err) reject(err);
        else resolve(result);
      };
      sock.setEncoding('utf8');
      sock.once('connect', () => sock.write(encodeLine({ cmd, args })));
      sock.on('error', (err: NodeJS.ErrnoException) => finish(connectError(this.path, err)));
      sock.on('data', (chunk: string) => {
        if (done) return;
        buf += chunk;
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          let reply: ReplyLine;
          try {
            reply = readReplyLine(line);
          } catch (err) {
            finish(err instanceof ControllerError ? err : badReply('a line it could not read'));
            return;
          }
          if (reply.kind === 'event') onEvent(reply.event);
          else {
            finish(
              reply.kind === 'result' ? undefined : new PeerError(reply.code, reply.message),
              reply.kind === 'result' ? reply.result : undefined,
            );
            return;
          }
        }
        if (buf.length > MAX_REPLY_CHARS) finish(badReply(`a reply line longer than ${MAX_REPLY_CHARS} characters`));
      });
      sock.on('close', () => finish(new ControllerError('E_DAEMON_IO', 'the controller daemon closed the admin connection')));
    });
  }
}
