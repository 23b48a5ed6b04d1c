import { spawn, type ChildProcess } from 'node:child_process';
import { timingSafeEqual } from 'node:crypto';
import { constants } from 'node:fs';
import { access, chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { errnoCode, errorMessage, SFTP_SECRET_BYTES } from '@borgpull/protocol';
import { AgentError } from './errors.js';

/** The one byte that tells the connector it may start speaking SFTP. */
export const SFTP_OK = 0x01;
/** How long a connection may take to send its secret. */
export const SECRET_TIMEOUT_MS = 5_000;
/** Connections still owing their secret; more are closed at once (file descriptors are finite). */
const MAX_PENDING = 8;
/** sun_path is 108 bytes on Linux, NUL included. */
const MAX_SOCKET_PATH = 107;
/** Lines of sftp-server's stderr kept for the log. */
const MAX_STDERR = 4000;

/** Where Debian (openssh-sftp-server), Fedora/RHEL, Arch/Alpine and Homebrew-less BSDs put it. */
export const SFTP_SERVER_CANDIDATES = [
  '/usr/lib/openssh/sftp-server',
  '/usr/lib/sftp-server',
  '/usr/libexec/openssh/sftp-server',
  '/usr/libexec/sftp-server',
  '/usr/lib/ssh/sftp-server',
] as const;

/** The first executable sftp-server on this machine. */
export async function findSftpServer(candidates: readonly string[] = SFTP_SERVER_CANDIDATES): Promise<string> {
  for (const c of candidates) {
    try {
      await access(c, constants.X_OK);
      return c;
    } catch {
      /* next */
    }
  }
  throw new AgentError(
    'E_AGENT_SFTP_SERVER',
    `no sftp-server found (looked in ${candidates.join(', ')}): install it (Debian: apt-get install openssh-sftp-server)`,
  );
}

export interface SftpGateOptions {
  /** The Unix socket the tunnel forwards to; its directory is made root-only. */
  readonly socketPath: string;
  /** This job's secret, from the controller's tunnel order. */
  readonly secret: Uint8Array;
  /** sftp-server's starting directory: what the controller's mount sees (`-d`). */
  readonly root: string;
  readonly sftpServer: string;
  readonly log: Logger;
  readonly secretTimeoutMs?: number;
}

/**
 * One job's SFTP, behind its secret. A connection to the socket (through the
 * tunnel: anyone on the backup server can reach its port) must send exactly
 * the job's secret within a few seconds; it is compared in constant time. A
 * wrong, short, long or late secret closes the connection and is logged,
 * before a single SFTP byte. The right one gets `sftp-server -R` with the
 * connection itself as stdin and stdout: Node stops reading it before the
 * child starts, then sends one ok byte and closes its own descriptor, so no
 * Node code sits in the data path. The secret serves one connection (one
 * mount per job). `stop()` closes the socket, removes it and ends the
 * sftp-server it started.
 */
export class SftpGate {
  private server?: Server;
  private readonly pending = new Set<Socket>();
  private readonly children = new Set<ChildProcess>();
  private used = false;
  private readonly secret: Buffer;
  private readonly log: Logger;

  constructor(private readonly o: SftpGateOptions) {
    if (o.secret.length !== SFTP_SECRET_BYTES) throw new AgentError('E_TUNNEL_FAILED', 'the SFTP secret has the wrong length');
    this.secret = Buffer.from(o.secret);
    this.log = o.log.child({ component: 'sftp' });
  }

  async start(): Promise<void> {
    const path = this.o.socketPath;
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH)
      throw new AgentError('E_TUNNEL_FAILED', `the SFTP socket path ${path} is too long for a Unix socket: use a shorter --state-dir`);
    const dir = dirname(path);
    await mkdir(dir, { mode: 0o700 }).catch((err: unknown) => {
      if (errnoCode(err) !== 'EEXIST') throw err;
    });
    const st = await lstat(dir);
    if (!st.isDirectory() || st.uid !== process.getuid?.())
      throw new AgentError('E_TUNNEL_FAILED', `${dir} is not a directory owned by this agent's user`);
    // Root-only whatever umask or an older version left: only root (and ssh as root) may connect.
    await chmod(dir, 0o700);
    await unlink(path).catch(() => undefined);
    const server = createServer((sock) => this.accept(sock));
    server.maxConnections = MAX_PENDING + 1;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.warn({ reason: errorMessage(err) }, 'SFTP socket error'));
    await chmod(path, 0o600);
    this.server = server;
  }

  private accept(sock: Socket): void {
    // Even once the secret is used, a connection is read and judged: the log then says whether
    // someone on the server tried a wrong secret or replayed the right one.
    if (this.pending.size >= MAX_PENDING) {
      this.log.warn({ reason: 'too many connections' }, 'refused an SFTP connection');
      sock.destroy();
      return;
    }
    this.pending.add(sock);
    const got: Buffer[] = [];
    let n = 0;
    const refuse = (reason: string): void => {
      if (!this.pending.delete(sock)) return;
      clearTimeout(timer);
      this.log.warn({ reason }, 'refused an SFTP connection');
      sock.destroy();
    };
    const timer = setTimeout(() => refuse('no secret in time'), this.o.secretTimeoutMs ?? SECRET_TIMEOUT_MS);
    sock.on('error', () => refuse('connection error'));
    sock.on('end', () => refuse('closed before sending the secret'));
    sock.on('data', (chunk: Buffer) => {
      if (!this.pending.has(sock)) return;
      n += chunk.length;
      // The connector sends the secret, then waits for our byte: anything more is not our connector.
      if (n > SFTP_SECRET_BYTES) {
        refuse('more bytes than a secret');
        return;
      }
      got.push(chunk);
      if (n < SFTP_SECRET_BYTES) return;
      if (!timingSafeEqual(Buffer.concat(got, n), this.secret)) {
        refuse('wrong secret');
        return;
      }
      if (this.used) {
        refuse('the secret was already used');
        return;
      }
      this.pending.delete(sock);
      clearTimeout(timer);
      this.serve(sock);
    });
  }

  private serve(sock: Socket): void {
    this.used = true;
    sock.removeAllListeners('data');
    sock.removeAllListeners('end');
    // Passing the socket as stdio makes Node stop reading it (readStop) before the child runs,
    // synchronously, and the connector sends nothing before our ok byte: Node sees no SFTP byte.
    let child: ChildProcess;
    try {
      child = spawn(this.o.sftpServer, ['-R', '-e', '-l', 'ERROR', '-d', this.o.root], {
        stdio: [sock, sock, 'pipe'],
        env: {},
        cwd: '/',
      });
    } catch (err) {
      this.log.error({ reason: errorMessage(err) }, 'cannot start sftp-server');
      sock.destroy();
      return;
    }
    this.children.add(child);
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (c: string) => {
      stderr = (stderr + c).slice(-MAX_STDERR);
    });
    child.on('error', (err) => {
      this.log.error({ reason: errorMessage(err) }, 'cannot start sftp-server');
      sock.destroy();
    });
    child.on('exit', (code, signal) => {
      this.children.delete(child);
      this.log.info({ exitCode: code, signal, stderr: stderr.trim().slice(-500) || undefined }, 'SFTP session ended');
    });
    // Our descriptor is closed once the byte is out (close, never shutdown: the child keeps the connection).
    sock.write(Buffer.of(SFTP_OK), () => sock.destroy());
    this.log.info({ pid: child.pid }, 'SFTP session started');
  }

  /** Idempotent. The socket is gone and every sftp-server it started is ended once this resolves. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.pending) s.destroy();
    this.pending.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    await unlink(this.o.socketPath).catch(() => undefined);
    await Promise.all([...this.children].map((c) => endChild(c)));
  }
}

async function endChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
  c.kill('SIGTERM');
  const timer = setTimeout(() => c.kill('SIGKILL'), 2000);
  await exited;
  clearTimeout(timer);
}
