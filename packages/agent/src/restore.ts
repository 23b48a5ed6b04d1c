import { createHash, type Hash } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { isAbsolute, normalize } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import type { Logger } from 'pino';
import type { AgentMessage, Channel, ControllerMessage } from '@borgpull/protocol';
import { AgentError } from './errors.js';

type AgentChannel = Channel<AgentMessage, ControllerMessage>;

/** Credit is returned in batches of this size once tar has taken the bytes. */
const CREDIT_BATCH = 256 * 1024;
const MAX_STDERR = 60 * 1024;

export type StreamState = 'receiving' | 'ending' | 'done';

/**
 * One streamed restore: the controller's export-tar bytes go into
 * `tar -C TARGET -x` as they arrive. The agent returns credit only for bytes
 * tar has taken, so neither side holds more than the controller's window.
 */
class RestoreStream {
  state: StreamState = 'receiving';
  private readonly hash: Hash = createHash('sha256');
  bytes = 0;
  files = 0;
  private unacked = 0;
  private stderr = '';
  private readonly tar: ResultPromise;

  constructor(
    readonly stream: number,
    readonly target: string,
    owners: 'numeric' | 'names',
    private readonly channel: AgentChannel,
    private readonly log: Logger,
  ) {
    // GNU tar refuses '..' members and strips leading '/'; never -P. As root it
    // sets owners from the archived names through this machine's passwd and
    // group, unless told to keep the archived numeric ids.
    const ownerFlag = owners === 'numeric' ? '--numeric-owner' : '--same-owner';
    this.tar = execa('tar', ['-C', target, '-x', '-v', '-f', '-', '-p', ownerFlag, '--keep-directory-symlink'], {
      stdin: 'pipe',
      stdout: 'pipe',
      stderr: 'pipe',
      buffer: false,
      reject: false,
      forceKillAfterDelay: 2000,
    });
    this.tar.stdout?.setEncoding('utf8');
    this.tar.stdout?.on('data', (s: string) => {
      for (const c of s) if (c === '\n') this.files++;
    });
    this.tar.stderr?.setEncoding('utf8');
    this.tar.stderr?.on('data', (s: string) => {
      if (this.stderr.length < MAX_STDERR) this.stderr = (this.stderr + s).slice(0, MAX_STDERR);
    });
    // tar dying early makes stdin writes fail: the result reports it.
    this.tar.stdin?.on('error', () => undefined);
  }

  data(chunk: Buffer): void {
    if (this.state !== 'receiving') return;
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.tar.stdin?.write(chunk, () => {
      this.unacked += chunk.length;
      if (this.unacked >= CREDIT_BATCH) {
        this.channel.notify({ type: 'credit', stream: this.stream, bytes: this.unacked });
        this.unacked = 0;
      }
    });
  }

  /** End of data: close tar's input, wait for it, verify what arrived. */
  async end(expected: { bytes: number; sha256: Uint8Array }): Promise<Extract<AgentMessage, { type: 'restore.result' }>> {
    this.state = 'ending';
    this.tar.stdin?.end();
    const res = await this.tar;
    this.state = 'done';
    const sha256 = this.hash.digest();
    const sameHash = Buffer.compare(sha256, Buffer.from(expected.sha256)) === 0;
    const intact = expected.bytes === this.bytes && sameHash;
    const ok = intact && res.exitCode === 0;
    let stderr = this.stderr;
    if (!intact) stderr = `stream check failed: got ${this.bytes} bytes, the controller sent ${expected.bytes}, checksums ${sameHash ? 'match' : 'differ'}\n${stderr}`;
    this.log.info({ stream: this.stream, bytes: this.bytes, files: this.files, tarExit: res.exitCode, ok }, 'restore stream finished');
    return { type: 'restore.result', id: 0, stream: this.stream, ok, bytes: this.bytes, files: this.files, sha256, tarExit: res.exitCode ?? null, stderr };
  }

  abort(reason: string): void {
    if (this.state === 'done') return;
    this.state = 'done';
    this.log.warn({ stream: this.stream, reason }, 'restore stream aborted, stopping tar');
    this.tar.kill('SIGKILL');
  }
}

/** Checks a restore target: absolute, normalized, and a directory (created if missing). */
export async function checkTarget(target: string): Promise<string> {
  if (!isAbsolute(target)) throw new AgentError('E_RESTORE_TARGET', `restore target must be an absolute path, got '${target}'`);
  const clean = normalize(target);
  await mkdir(clean, { recursive: true, mode: 0o755 });
  if (!(await stat(clean)).isDirectory()) throw new AgentError('E_RESTORE_TARGET', `restore target ${clean} is not a directory`);
  return clean;
}

/** The agent's streamed restores, at most one per stream id, all ended with the session. */
export class RestoreStreams {
  private readonly streams = new Map<number, RestoreStream>();

  constructor(
    private readonly channel: AgentChannel,
    private readonly log: Logger,
  ) {}

  async begin(msg: Extract<ControllerMessage, { type: 'restore.begin' }>): Promise<void> {
    if (this.streams.has(msg.stream)) throw new AgentError('E_RESTORE_BUSY', `restore stream ${msg.stream} is already open`);
    const target = await checkTarget(msg.target);
    this.streams.set(msg.stream, new RestoreStream(msg.stream, target, msg.owners ?? 'numeric', this.channel, this.log.child({ component: 'restore' })));
  }

  data(stream: number, chunk: Buffer): void {
    const s = this.streams.get(stream);
    if (!s) throw new AgentError('E_RESTORE_STREAM', `data for unknown restore stream ${stream}`);
    s.data(chunk);
  }

  async end(msg: Extract<ControllerMessage, { type: 'restore.end' }>): Promise<Extract<AgentMessage, { type: 'restore.result' }>> {
    const s = this.streams.get(msg.stream);
    if (!s) throw new AgentError('E_RESTORE_STREAM', `end of unknown restore stream ${msg.stream}`);
    try {
      return { ...(await s.end(msg)), id: msg.id };
    } finally {
      this.streams.delete(msg.stream);
    }
  }

  abort(stream: number, reason: string): void {
    this.streams.get(stream)?.abort(reason);
    this.streams.delete(stream);
  }

  abortAll(reason: string): void {
    for (const id of [...this.streams.keys()]) this.abort(id, reason);
  }
}
