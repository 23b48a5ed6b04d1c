/**
 * Keeps a connection honest: ping the peer every interval; a peer not heard
 * from (no pong, no frame) since the previous ping by the next tick is cut off. Transport-free
 * (both sides wire it to a ws WebSocket: ping(), terminate(), 'pong'), so it
 * is tested with fake timers.
 */
export interface HeartbeatOptions {
  readonly intervalMs: number;
  /** Sends a ping (ws: `ws.ping()`). */
  readonly ping: () => void;
  /** The peer missed its pong: cut it off (ws: `ws.terminate()`). Called once. */
  readonly terminate: () => void;
}

export type HeartbeatState = 'idle' | 'running' | 'stopped';

export class Heartbeat {
  #state: HeartbeatState = 'idle';
  #timer: ReturnType<typeof setInterval> | undefined;
  #answered = true;

  constructor(private readonly opts: HeartbeatOptions) {}

  get state(): HeartbeatState {
    return this.#state;
  }

  /** Starts ticking. Once stopped, a heartbeat stays stopped. */
  start(): void {
    if (this.#state !== 'idle') return;
    this.#state = 'running';
    this.#timer = setInterval(() => this.#tick(), this.opts.intervalMs);
  }

  /**
   * Call whenever the peer is heard from: a pong, or any frame (a peer busy
   * with a restore may answer a ping late, its pong queued behind data).
   */
  heard(): void {
    this.#answered = true;
  }

  /** Idempotent; no timer outlives it. */
  stop(): void {
    this.#state = 'stopped';
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #tick(): void {
    if (!this.#answered) {
      this.stop();
      this.opts.terminate();
      return;
    }
    this.#answered = false;
    this.opts.ping();
  }
}
