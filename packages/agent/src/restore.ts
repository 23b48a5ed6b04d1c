import { createHash, type Hash } from 'node:crypto';
import { closeSync } from 'node:fs';
import { isAbsolute, normalize } from 'node:path';
import type { Logger } from 'pino';
import type { AgentMessage, Channel, ControllerMessage } from '@borgpull/protocol';
import { AgentError } from './errors.js';
import { Extractor } from './extract/extractor.js';
import { OwnerMap } from './extract/owners.js';
import { errCode, isRefused, openTarget, show } from './extract/safe-dir.js';
import { TarStream } from './extract/tar-stream.js';

type AgentChannel = Channel<AgentMessage, ControllerMessage>;

/** Credit is returned in batches of this size once the bytes are written. */
const CREDIT_BATCH = 256 * 1024;

export type StreamState = 'receiving' | 'ending' | 'done';

/** `tarExit` in restore.result, kept from the GNU tar days: what the controller reports. */
const EXIT_OK = 0;
const EXIT_SOME_NOT_WRITTEN = 1;
const EXIT_FATAL = 2;

/**
 * One streamed restore: the controller's export-tar bytes are parsed and
 * written under TARGET as they arrive, by the agent's own extractor (see
 * extract/), which never writes through a symlink a user planted. Each chunk
 * is written synchronously before the next is taken (a few ms at most: one
 * ws frame), and credit goes back only for bytes already written, so
 * neither side holds more than the controller's window.
 */
class RestoreStream {
  state: StreamState = 'receiving';
  private readonly hash: Hash = createHash('sha256');
  bytes = 0;
  private unacked = 0;
  private readonly extractor: Extractor;
  private readonly tar: TarStream;
  private fatal: string | undefined;
  private closed = false;

  constructor(
    readonly stream: number,
    readonly target: string,
    targetFd: number,
    owners: 'numeric' | 'names',
    private readonly channel: AgentChannel,
    private readonly log: Logger,
  ) {
    // 'names' maps archived user and group names through this machine's
    // passwd and group of today, as GNU tar does as root; 'numeric' keeps ids.
    this.extractor = new Extractor(targetFd, owners === 'names' ? OwnerMap.names() : OwnerMap.numeric());
    this.tar = new TarStream(this.extractor);
  }

  get files(): number {
    return this.extractor.written;
  }

  data(chunk: Buffer): void {
    if (this.state !== 'receiving') return;
    this.hash.update(chunk);
    this.bytes += chunk.length;
    if (this.fatal === undefined && !this.tar.ended) {
      try {
        this.tar.push(chunk);
      } catch (err) {
        this.stop(err);
      }
    }
    this.unacked += chunk.length;
    if (this.unacked >= CREDIT_BATCH) {
      this.channel.notify({ type: 'credit', stream: this.stream, bytes: this.unacked });
      this.unacked = 0;
    }
  }

  /** A malformed stream: nothing more is written (what was written stays, as with tar). */
  private stop(err: unknown): void {
    this.fatal = err instanceof Error ? err.message : String(err);
    this.log.warn({ stream: this.stream, reason: this.fatal }, 'restore stream stopped');
    this.close();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.extractor.close();
    } catch (err) {
      this.extractor.note(`closing the restore: ${errCode(err) ?? String(err)}`);
    }
  }

  /** End of data: finish the extraction, verify what arrived. */
  async end(expected: { bytes: number; sha256: Uint8Array }): Promise<Extract<AgentMessage, { type: 'restore.result' }>> {
    this.state = 'ending';
    if (this.fatal === undefined) {
      try {
        this.tar.finish();
      } catch (err) {
        this.stop(err);
      }
    }
    this.close();
    this.state = 'done';
    const sha256 = this.hash.digest();
    const sameHash = Buffer.compare(sha256, Buffer.from(expected.sha256)) === 0;
    const intact = expected.bytes === this.bytes && sameHash;
    const x = this.extractor;
    const tarExit = this.fatal !== undefined ? EXIT_FATAL : x.notWritten > 0 ? EXIT_SOME_NOT_WRITTEN : EXIT_OK;
    const ok = intact && tarExit === EXIT_OK;
    const lines = [...x.messages];
    if (x.notWritten > x.messages.length) lines.push(`(${x.notWritten - x.messages.length} more not shown)`);
    if (this.fatal !== undefined) lines.push(`restore stopped: ${this.fatal}`);
    if (x.notWritten > 0) lines.push(`${x.notWritten} member(s) not written, ${x.written} written; the first: ${x.messages[0] ?? ''}`);
    if (!intact)
      lines.unshift(
        `stream check failed: got ${this.bytes} bytes, the controller sent ${expected.bytes}, checksums ${sameHash ? 'match' : 'differ'}`,
      );
    const stderr = lines.length > 0 ? `${lines.join('\n')}\n` : '';
    this.log.info(
      { stream: this.stream, bytes: this.bytes, files: x.written, notWritten: x.notWritten, tarExit, ok },
      'restore stream finished',
    );
    return { type: 'restore.result', id: 0, stream: this.stream, ok, bytes: this.bytes, files: x.written, sha256, tarExit, stderr };
  }

  abort(reason: string): void {
    if (this.state === 'done') return;
    this.state = 'done';
    this.log.warn({ stream: this.stream, reason }, 'restore stream aborted');
    this.close();
  }
}

/**
 * Opens a restore target: absolute, normalized, walked from '/' without
 * following a link a user planted (root's links are followed), created if
 * missing. Returns the clean path and an fd of the directory itself.
 */
export function openRestoreTarget(target: string): { path: string; fd: number } {
  if (!isAbsolute(target)) throw new AgentError('E_RESTORE_TARGET', `restore target must be an absolute path, got '${show(target)}'`);
  const clean = normalize(target);
  try {
    return { path: clean, fd: openTarget(clean) };
  } catch (err) {
    const why = isRefused(err) ? err.message : (errCode(err) ?? String(err));
    throw new AgentError('E_RESTORE_TARGET', `restore target ${show(clean)} refused: ${why}`);
  }
}

/** Checks a restore target (see openRestoreTarget) and returns its clean path. */
export async function checkTarget(target: string): Promise<string> {
  const t = openRestoreTarget(target);
  closeSync(t.fd);
  return t.path;
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
    const target = openRestoreTarget(msg.target);
    try {
      this.streams.set(
        msg.stream,
        new RestoreStream(
          msg.stream,
          target.path,
          target.fd,
          msg.owners ?? 'numeric',
          this.channel,
          this.log.child({ component: 'restore' }),
        ),
      );
    } catch (err) {
      closeSync(target.fd);
      throw err;
    }
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
