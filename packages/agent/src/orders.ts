import type { Logger } from 'pino';
import { BorgpullError, type AgentMessage, type Channel, type ControllerMessage } from '@borgpull/protocol';
import { readIdentity } from './identity.js';
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

  constructor(
    private readonly channel: AgentChannel,
    paths: AgentPaths,
    private readonly enrollment: Enrollment,
    private readonly log: Logger,
  ) {
    this.tunnel = new Tunnel(paths, enrollment.sshdPort, log);
    this.tunnel.onClosed = (port, reason) => channel.notify({ type: 'tunnel.closed', port, reason });
    this.restores = new RestoreStreams(channel, log);
  }

  /** Bulk data: only restore streams carry it. A bad stream id ends that session. */
  data(stream: number, chunk: Buffer): void {
    try {
      this.restores.data(stream, chunk);
    } catch (err) {
      this.log.warn({ code: (err as BorgpullError).code, stream }, 'unexpected restore data, closing the session');
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
        this.channel.reply({ type: 'tunnel.opened', id: msg.id });
        return;
      case 'tunnel.close':
        await this.tunnel.close('ordered by the controller');
        this.channel.reply({ type: 'ok', id: msg.id });
        return;
      case 'identity.get':
        this.channel.reply({ type: 'identity', id: msg.id, ...(await readIdentity(this.enrollment.sshdHostKey)) });
        return;
      case 'restore.begin':
        await this.restores.begin(msg);
        this.channel.reply({ type: 'ok', id: msg.id });
        return;
      case 'restore.end':
        this.channel.reply(await this.restores.end(msg));
        return;
      case 'restore.abort':
        this.restores.abort(msg.stream, msg.reason);
        return;
      default:
        if ('id' in msg && typeof msg.id === 'number' && msg.type !== 'ok' && msg.type !== 'error') {
          this.channel.reply({ type: 'error', id: msg.id, code: 'E_AGENT_UNSUPPORTED', message: `this agent does not handle '${msg.type}'` });
        }
    }
  }

  /** The session is gone: nothing it started may outlive it. */
  async sessionEnded(reason: string): Promise<void> {
    this.restores.abortAll(`session ended: ${reason}`);
    await this.tunnel.close(`session ended: ${reason}`);
  }
}
