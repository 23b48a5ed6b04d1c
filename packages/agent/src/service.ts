import type { Logger } from 'pino';
import type WebSocket from 'ws';
import { AgentHandshake, BorgpullError, errorMessage, Heartbeat, type IdentityKeys } from '@borgpull/protocol';
import { Backoff, sleep } from './backoff.js';
import { dialSession } from './dial.js';
import { AgentError } from './errors.js';
import { OrderHandler } from './orders.js';
import type { AgentPaths, Enrollment } from './state.js';

export type ServiceState = 'idle' | 'connecting' | 'connected' | 'waiting' | 'stopped';

export interface ServiceOptions {
  readonly paths: AgentPaths;
  readonly enrollment: Enrollment;
  readonly identity: IdentityKeys;
  readonly controllerKey: Uint8Array;
  readonly software: string;
  readonly log: Logger;
  readonly heartbeatMs?: number;
  /** A connection that lasted this long resets the backoff. */
  readonly stableMs?: number;
  readonly backoff?: Backoff;
}

/**
 * The agent service: keeps one connection to its pinned controller, dialing
 * out (so NAT is no obstacle), reconnecting with capped, jittered backoff,
 * never giving up. One AbortSignal ends the loop, its sleeps and its socket.
 */
export class AgentService {
  state: ServiceState = 'idle';
  private readonly ac = new AbortController();
  private loop?: Promise<void>;
  private ws?: WebSocket;
  private readonly backoff: Backoff;
  /** Resolves each time a session is established (tests and status). */
  onConnected: () => void = () => undefined;

  constructor(private readonly opts: ServiceOptions) {
    this.backoff = opts.backoff ?? new Backoff();
  }

  private transition(next: ServiceState, data: Record<string, unknown> = {}): void {
    if (this.state === next) return;
    this.opts.log.info({ from: this.state, to: next, ...data }, 'agent state');
    this.state = next;
  }

  start(): void {
    if (this.loop) return;
    this.loop = this.run();
  }

  async stop(reason: string): Promise<void> {
    if (!this.ac.signal.aborted) this.ac.abort(new AgentError('E_STOPPED', reason));
    this.ws?.close(1001, reason);
    await this.loop;
    this.transition('stopped', { reason });
  }

  private async run(): Promise<void> {
    const signal = this.ac.signal;
    while (!signal.aborted) {
      const started = Date.now();
      this.transition('connecting', { url: this.opts.enrollment.url });
      try {
        await this.connectOnce(signal);
      } catch (err) {
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- aborted changes across the await
        if (signal.aborted) break;
        const code = err instanceof BorgpullError ? err.code : 'E_CONNECT';
        this.opts.log.warn({ code, reason: errorMessage(err) }, 'connection to controller failed');
      }
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- aborted changes across the await
      if (signal.aborted) break;
      if (Date.now() - started >= (this.opts.stableMs ?? 60_000)) this.backoff.reset();
      const delay = this.backoff.next();
      this.transition('waiting', { retryInMs: delay, attempt: this.backoff.attempts });
      try {
        await sleep(delay, signal);
      } catch {
        break;
      }
    }
  }

  /** One connection, from dial to close. Resolves when it closes; rejects if it never got going. */
  private async connectOnce(signal: AbortSignal): Promise<void> {
    const { enrollment, identity, controllerKey, software, log } = this.opts;
    const hs = new AgentHandshake({ identity, controllerKey, software });
    const { ws, channel } = await dialSession(enrollment.url, hs, signal);
    this.ws = ws;
    const orders = new OrderHandler(channel, this.opts.paths, enrollment, log);
    channel.onError = (err) => log.warn({ code: err.code, reason: err.message }, 'bad frame from controller, closing');
    channel.onMessage = (msg) => orders.handle(msg);
    channel.onData = (stream, chunk) => orders.data(stream, chunk);
    const heartbeat = new Heartbeat({
      intervalMs: this.opts.heartbeatMs ?? 15_000,
      ping: () => ws.ping(),
      terminate: () => {
        log.warn('controller missed its heartbeat, reconnecting');
        ws.terminate();
      },
    });
    // Any frame from the controller proves it alive, not only a pong: during a restore the
    // pong queues behind the data this agent is still unpacking (head-of-line blocking).
    ws.on('pong', () => heartbeat.heard());
    ws.on('message', () => heartbeat.heard());
    heartbeat.start();
    const onAbort = (): void => ws.close(1001, 'agent stopping');
    signal.addEventListener('abort', onAbort, { once: true });
    this.transition('connected', { controller: enrollment.url });
    this.onConnected();
    await new Promise<void>((resolve) => {
      ws.on('close', (code, reason) => {
        heartbeat.stop();
        signal.removeEventListener('abort', onAbort);
        const why = `connection closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`;
        channel.close(why);
        this.ws = undefined;
        void orders.sessionEnded(why).finally(resolve);
      });
    });
  }
}
