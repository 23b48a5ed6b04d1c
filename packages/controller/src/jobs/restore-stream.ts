import { createHash } from 'node:crypto';
import { randomInt } from 'node:crypto';
import { execa } from 'execa';
import { MAX_RESTORE_PATHS, PeerError, escapeControl, type AgentMessage } from '@borgpull/protocol';
import type { AgentLink } from '../agent-link.js';
import { ControllerError } from '../errors.js';
import type { StatePaths } from '../state.js';
import { borgCommand } from './borg.js';
import { ensureBorgBase } from './borg-base.js';

/** Bytes the controller may have in flight to the agent before borg's output is paused. */
export const WINDOW_BYTES = 8 * 1024 * 1024;
/**
 * Bytes ws may hold for the socket (not yet taken by the kernel) before borg's
 * output is paused, whatever the credit says: an agent that returns credit
 * but stops reading must not make the controller buffer the archive.
 */
export const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

/** A peer's message on one line: control characters escaped, bounded. */
function oneLine(s: string): string {
  const e = escapeControl(s);
  return e.length > 400 ? `${e.slice(0, 399)}…` : e;
}

export interface StreamResult {
  bytes: number;
  files: number;
  sha256: string;
}

/**
 * Streams `borg export-tar` over the agent's session into its `tar -x`.
 * Credit-based flow control: at most WINDOW_BYTES are unacknowledged, so
 * memory stays flat however fast borg produces or however slowly tar writes.
 * Credit comes from the agent and is checked, not trusted: a grant for more
 * than was sent and not yet acknowledged fails the restore (E_PROTO_CREDIT),
 * and borg also pauses while the socket's own buffer is above
 * SOCKET_BUFFER_BYTES (a peer that grants credit but does not read).
 */
export async function streamExportTar(opts: {
  p: StatePaths;
  agent: string;
  link: AgentLink;
  archive: string;
  paths: readonly string[];
  target: string;
  owners: 'numeric' | 'names';
  totalBytes?: number;
  signal: AbortSignal;
  onProgress: (bytes: number) => void;
}): Promise<StreamResult> {
  const { p, agent, link, signal } = opts;
  const stream = randomInt(1, 2 ** 31);
  try {
    await link.channel.request(
      {
        type: 'restore.begin',
        stream,
        target: opts.target,
        totalBytes: opts.totalBytes,
        owners: opts.owners,
        // For the client's own record of restore orders.
        archive: opts.archive,
        paths: opts.paths.slice(0, MAX_RESTORE_PATHS),
      },
      30_000,
    );
  } catch (err) {
    // The client's policy said no: its own code and one line, with the agent's reason (a peer's text: escaped).
    if (err instanceof PeerError && err.code === 'E_RESTORE_REFUSED') {
      throw new ControllerError(
        'E_RESTORE_REFUSED',
        `restore refused by ${agent}'s restore policy (${oneLine(err.message)}); nothing was sent`,
      );
    }
    throw err;
  }

  const ac = new AbortController();
  const both = AbortSignal.any([signal, ac.signal]);
  await ensureBorgBase(p, agent);
  // `--` first: a PATH such as `--tar-filter=CMD` (borg runs that command) is a path, never an option.
  const cmd = borgCommand(p, agent, ['export-tar', '--', `${p.repo(agent)}::${opts.archive}`, '-', ...opts.paths]);
  const borg = execa(cmd.file, cmd.args, {
    env: cmd.env,
    extendEnv: false,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: { stdout: false, stderr: true },
    reject: false,
    cancelSignal: both,
    forceKillAfterDelay: 3000,
  });
  const hash = createHash('sha256');
  let sent = 0;
  /** Sent and not yet acknowledged by credit. */
  let inflight = 0;
  let paused = false;
  let lost: string | undefined;
  let violation: ControllerError | undefined;
  const out = borg.stdout;
  const resumeIfRoom = (): void => {
    if (paused && inflight < WINDOW_BYTES && link.bufferedAmount < SOCKET_BUFFER_BYTES) {
      paused = false;
      out.resume();
    }
  };
  const offCredit = link.onMessage((m: AgentMessage) => {
    if (m.type !== 'credit' || m.stream !== stream || violation) return;
    if (m.bytes > inflight) {
      violation = new ControllerError(
        'E_PROTO_CREDIT',
        `the agent returned credit for ${m.bytes} bytes with only ${inflight} unacknowledged: protocol violation, restore aborted`,
      );
      ac.abort(violation);
      return;
    }
    inflight -= m.bytes;
    resumeIfRoom();
  });
  const offClose = link.onClose((reason) => {
    lost = reason;
    ac.abort(new ControllerError('E_JOB_CONNECTION_LOST', reason));
  });
  out.on('data', (chunk: Buffer) => {
    if (violation) return;
    hash.update(chunk);
    sent += chunk.length;
    inflight += chunk.length;
    // The callback runs once ws has handed the frame to the kernel: the
    // moment its buffer may have fallen below the bound (a peer that does not
    // read gets no callbacks, and borg stays paused).
    link.channel.sendData(stream, chunk, resumeIfRoom);
    opts.onProgress(sent);
    if (!paused && (inflight >= WINDOW_BYTES || link.bufferedAmount >= SOCKET_BUFFER_BYTES)) {
      paused = true;
      out.pause();
    }
  });
  try {
    const res = await borg;
    if (violation) throw violation;
    if (lost !== undefined)
      throw new ControllerError(
        'E_JOB_CONNECTION_LOST',
        `the connection to the agent was lost during the restore (${escapeControl(lost)})`,
      );
    if (signal.aborted) throw new ControllerError('E_JOB_CANCELLED', 'the restore was cancelled');
    if (res.exitCode !== 0) {
      // borg's stderr names archived (client-chosen) paths: escaped before any terminal or record.
      const text = escapeControl(res.stderr.trim().split('\n').slice(-3).join('; '));
      throw new ControllerError('E_JOB_BORG', `borg export-tar failed (exit ${res.exitCode ?? res.signal}): ${text}`);
    }
    const sha = hash.digest();
    const result = await link.channel.request({ type: 'restore.end', stream, bytes: sent, sha256: sha }, 30 * 60_000);
    if (!result.ok) {
      throw new ControllerError(
        'E_JOB_TAR',
        `the agent's tar did not restore cleanly (tar exit ${result.tarExit ?? 'killed'}): ${escapeControl(result.stderr.trim().split('\n').slice(-3).join('; '))}`,
      );
    }
    return { bytes: result.bytes, files: result.files, sha256: sha.toString('hex') };
  } catch (err) {
    link.channel.notify({ type: 'restore.abort', stream, reason: err instanceof Error ? err.message.slice(0, 200) : 'failed' });
    throw err;
  } finally {
    offCredit();
    offClose();
  }
}
