import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import { Channel, Heartbeat, type AgentMessage, type ControllerMessage } from '@borgpull/protocol';

export type LinkState = 'open' | 'closed';

type Out = ControllerMessage;
type In = AgentMessage;

/** One authenticated, sealed connection to an enrolled agent. */
export class AgentLink {
  state: LinkState = 'open';
  readonly connectedAt = Date.now();
  lastSeen = Date.now();
  private readonly heartbeat: Heartbeat;
  private readonly closeHandlers: Array<(reason: string) => void> = [];
  private readonly messageHandlers: Array<(msg: In) => void> = [];
  private readonly dataHandlers: Array<(stream: number, chunk: Buffer) => void> = [];

  constructor(
    readonly name: string,
    readonly address: string,
    readonly software: string,
    private readonly ws: WebSocket,
    readonly channel: Channel<Out, In>,
    private readonly log: Logger,
    heartbeatMs: number,
  ) {
    channel.onMessage = (msg) => {
      this.lastSeen = Date.now();
      for (const h of this.messageHandlers) h(msg);
    };
    channel.onData = (stream, chunk) => {
      this.lastSeen = Date.now();
      for (const h of this.dataHandlers) h(stream, chunk);
    };
    this.heartbeat = new Heartbeat({
      intervalMs: heartbeatMs,
      ping: () => ws.ping(),
      terminate: () => {
        this.log.warn({ agent: this.name }, 'agent missed its heartbeat, terminating');
        ws.terminate();
      },
    });
    ws.on('pong', () => {
      this.heartbeat.heard();
      this.lastSeen = Date.now();
    });
    // Any frame from the agent proves it alive, not only a pong: during a restore its
    // pong queues behind megabytes of data it is still unpacking (head-of-line), while
    // its credit frames keep coming. Seen: a loaded 1 GiB bench restore cut at 9 s (1006).
    ws.on('message', () => this.heartbeat.heard());
    this.heartbeat.start();
  }

  onClose(h: (reason: string) => void): () => void {
    this.closeHandlers.push(h);
    return () => remove(this.closeHandlers, h);
  }

  onMessage(h: (msg: In) => void): () => void {
    this.messageHandlers.push(h);
    return () => remove(this.messageHandlers, h);
  }

  onData(h: (stream: number, chunk: Buffer) => void): () => void {
    this.dataHandlers.push(h);
    return () => remove(this.dataHandlers, h);
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  /** Called by the server once the socket is gone. Idempotent. */
  closed(reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.heartbeat.stop();
    this.channel.close(reason);
    for (const h of [...this.closeHandlers]) h(reason);
  }

  close(code: number, reason: string): void {
    this.ws.close(code, reason);
    // A peer that does not answer the close handshake is cut off.
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }
}

function remove<T>(list: T[], item: T): void {
  const i = list.indexOf(item);
  if (i >= 0) list.splice(i, 1);
}
