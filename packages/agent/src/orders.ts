import type { Logger } from 'pino';
import { BorgpullError, errnoCode, errorMessage, type AgentMessage, type Channel, type ControllerMessage } from '@borgpull/protocol';
import { AgentError } from './errors.js';
import { readHostReport } from './host-report.js';
import { orderRecord, outcome, RestoreLog, type RestoreRecord } from './restore-log.js';
import { checkRestoreTarget, describePolicy, loadPolicy } from './restore-policy.js';
import { RestoreStreams } from './restore.js';
import type { AgentPaths, Enrollment } from './state.js';
import { Tunnel } from './tunnel.js';

type AgentChannel = Channel<AgentMessage, ControllerMessage>;

/**
 * The fixed set of orders an agent obeys from its pinned controller. It never
 * runs a command string it was sent.
 */
export class OrderHandler {
  private readonly tunnel: Tunnel;
  private readonly restores: RestoreStreams;
  private readonly record: RestoreLog;
  /** Restore orders accepted and not yet over, by stream: their record and the bytes received. */
  private readonly active = new Map<number, { rec: RestoreRecord; bytes: number }>();
  private readonly opening = new Set<number>();

  constructor(
    private readonly channel: AgentChannel,
    private readonly paths: AgentPaths,
    enrollment: Enrollment,
    private readonly log: Logger,
  ) {
    this.tunnel = new Tunnel(paths, enrollment.sftpRoot ?? '/', log);
    this.tunnel.onClosed = (port, reason) => channel.notify({ type: 'tunnel.closed', port, reason });
    this.restores = new RestoreStreams(channel, log);
    this.record = new RestoreLog(paths.restoreLog);
  }

  /** Bulk data: only restore streams carry it. A bad stream id ends that session. */
  data(stream: number, chunk: Buffer): void {
    try {
      this.restores.data(stream, chunk);
      const a = this.active.get(stream);
      if (a) a.bytes += chunk.length;
    } catch (err) {
      this.log.warn({ code: err instanceof BorgpullError ? err.code : undefined, stream }, 'unexpected restore data, closing the session');
      this.channel.close('unexpected restore data');
    }
  }

  handle(msg: ControllerMessage): void {
    void this.dispatch(msg).catch((err: unknown) => {
      const id = 'id' in msg && typeof msg.id === 'number' ? msg.id : undefined;
      const code = err instanceof BorgpullError ? err.code : 'E_AGENT_INTERNAL';
      const message = err instanceof Error ? err.message : String(err);
      this.log.warn({ code, order: msg.type, reason: message }, 'order failed');
      if (id !== undefined) this.channel.reply({ type: 'error', id, code, message });
    });
  }

  private async dispatch(msg: ControllerMessage): Promise<void> {
    switch (msg.type) {
      case 'tunnel.open':
        await this.tunnel.open(msg);
        this.channel.reply({ type: 'tunnel.opened', id: msg.id, sftp: true });
        return;
      case 'tunnel.close':
        await this.tunnel.close('ordered by the controller');
        this.channel.reply({ type: 'ok', id: msg.id });
        return;
      case 'host.report.get':
        this.channel.reply({ type: 'host.report', id: msg.id, ...(await readHostReport()) });
        return;
      case 'restore.begin':
        await this.beginRestore(msg);
        this.channel.reply({ type: 'ok', id: msg.id });
        return;
      case 'restore.end': {
        const a = this.active.get(msg.stream);
        let result: Extract<AgentMessage, { type: 'restore.result' }>;
        try {
          result = await this.restores.end(msg);
        } catch (err) {
          if (a) await this.finish(msg.stream, { result: 'failed', bytes: a.bytes, reason: errorMessage(err) });
          throw err;
        }
        const lastLine = result.stderr.trim().split('\n').slice(-1)[0];
        await this.finish(msg.stream, {
          result: result.ok ? 'ok' : 'failed',
          bytes: result.bytes,
          files: result.files,
          ...(result.ok ? {} : { reason: lastLine || `tar exit ${result.tarExit ?? 'killed'}` }),
        });
        this.channel.reply(result);
        return;
      }
      case 'restore.abort':
        this.restores.abort(msg.stream, msg.reason);
        await this.finish(msg.stream, { result: 'aborted', reason: `aborted by the controller: ${msg.reason}` });
        return;
      default:
        if ('id' in msg && typeof msg.id === 'number' && msg.type !== 'ok' && msg.type !== 'error') {
          this.channel.reply({
            type: 'error',
            id: msg.id,
            code: 'E_AGENT_UNSUPPORTED',
            message: `this agent does not handle '${msg.type}'`,
          });
        }
    }
  }

  /**
   * A restore order: the client's policy decides before anything is created
   * (read at every order, so a change applies at once), and every order is
   * recorded, refused or not, before it is answered.
   */
  private async beginRestore(msg: Extract<ControllerMessage, { type: 'restore.begin' }>): Promise<void> {
    // Reserved before the first await: two orders for one stream never both get past here.
    if (this.active.has(msg.stream) || this.opening.has(msg.stream))
      throw new AgentError('E_RESTORE_BUSY', `restore stream ${msg.stream} is already open`);
    this.opening.add(msg.stream);
    try {
      await this.openRestore(msg);
    } finally {
      this.opening.delete(msg.stream);
    }
  }

  private async openRestore(msg: Extract<ControllerMessage, { type: 'restore.begin' }>): Promise<void> {
    const base = { stream: msg.stream, target: msg.target, archive: msg.archive, paths: msg.paths };
    const state = await loadPolicy(this.paths.restorePolicy);
    const decision = state.policy
      ? await checkRestoreTarget(state.policy, msg.target)
      : { allowed: false as const, reason: `the policy file is damaged, so every restore is refused (${state.damaged})` };
    if (!decision.allowed) {
      const what = state.policy ? describePolicy(state.policy) : 'restores refused';
      await this.append(orderRecord({ ...base, result: 'refused', reason: `${what}: ${decision.reason}` }));
      this.log.warn({ stream: msg.stream, reason: decision.reason }, 'restore refused by the restore policy');
      throw new AgentError('E_RESTORE_REFUSED', `${what}: ${decision.reason}`);
    }
    const rec = orderRecord({ ...base, result: 'started' });
    await this.append(rec);
    try {
      await this.restores.begin(msg);
    } catch (err) {
      await this.append(outcome(rec, { result: 'failed', bytes: 0, reason: errorMessage(err) }));
      throw err;
    }
    this.active.set(msg.stream, { rec, bytes: 0 });
  }

  private async finish(
    stream: number,
    o: { result: 'ok' | 'failed' | 'aborted'; bytes?: number; files?: number; reason?: string },
  ): Promise<void> {
    const a = this.active.get(stream);
    if (!a) return;
    this.active.delete(stream);
    await this.append(outcome(a.rec, { ...o, bytes: o.bytes ?? a.bytes }));
  }

  /** The record must never stop a restore the policy allowed: a write failure is logged. */
  private async append(rec: RestoreRecord): Promise<void> {
    try {
      await this.record.append(rec);
    } catch (err) {
      this.log.error({ code: errnoCode(err), file: this.paths.restoreLog }, 'cannot write the restore record');
    }
  }

  /** The session is gone: nothing it started may outlive it. */
  async sessionEnded(reason: string): Promise<void> {
    this.restores.abortAll(`session ended: ${reason}`);
    for (const stream of [...this.active.keys()]) await this.finish(stream, { result: 'aborted', reason: `session ended: ${reason}` });
    await this.tunnel.close(`session ended: ${reason}`);
  }
}
