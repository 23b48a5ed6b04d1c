/**
 * Raw WebSocket tools for integration tests: a client that speaks no protocol
 * (to feed the controller hostile frames) and a frame-level proxy between an
 * agent and its controller (to capture, duplicate or inject frames).
 */
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { toBuffer } from '@borgpull/protocol';
import { waitFor } from '../harness/wait.js';

export interface Frame {
  data: Buffer;
  isBinary: boolean;
}

/** A plain ws client: records what it receives and how the connection ended. */
export class RawClient {
  readonly frames: Frame[] = [];
  /** Our end's port: the controller logs us as peer 127.0.0.1:<localPort>. */
  localPort = 0;
  close: { code: number; reason: string } | undefined;
  private constructor(readonly ws: WebSocket) {}

  /** `autoPong: false`: a peer that never answers a ping (the heartbeat's target). */
  static connect(url: string, opts: { autoPong?: boolean } = {}): Promise<RawClient> {
    const ws = new WebSocket(url, { perMessageDeflate: false, autoPong: opts.autoPong ?? true });
    const c = new RawClient(ws);
    ws.on('upgrade', (res) => {
      c.localPort = res.socket.localPort ?? 0;
    });
    ws.on('message', (data, isBinary) => c.frames.push({ data: toBuffer(data), isBinary }));
    ws.on('close', (code, reason) => {
      c.close = { code, reason: reason.toString() };
    });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(c));
      ws.once('error', reject);
      ws.on('error', () => undefined);
    });
  }

  get peer(): string {
    return `127.0.0.1:${this.localPort}`;
  }

  send(data: Buffer | string, binary = typeof data !== 'string'): void {
    this.ws.send(data, { binary });
  }

  /** Waits for the controller to end the connection. */
  closed(timeoutMs = 10_000): Promise<{ code: number; reason: string }> {
    return waitFor(`the controller to close the connection from ${this.peer}`, () => this.close, { timeoutMs });
  }

  nextFrame(timeoutMs = 5_000): Promise<Frame> {
    return waitFor(`a frame on ${this.peer}`, () => this.frames[0], { timeoutMs });
  }

  terminate(): void {
    this.ws.terminate();
  }
}

/** One proxied connection: agent side (down) and controller side (up). */
export class ProxyConn {
  /** Every frame the agent sent on this connection, in order. */
  readonly fromAgent: Frame[] = [];
  readonly fromController: Frame[] = [];
  private readonly queue: Frame[] = [];
  closed = false;

  constructor(
    readonly down: WebSocket,
    readonly up: WebSocket,
  ) {}

  /** Sends a frame to the controller as if the agent had sent it. */
  sendUp(f: Frame): void {
    if (this.up.readyState === WebSocket.OPEN) this.up.send(f.data, { binary: f.isBinary });
    else this.queue.push(f);
  }

  flush(): void {
    for (const f of this.queue.splice(0)) this.up.send(f.data, { binary: f.isBinary });
  }
}

function closeLike(ws: WebSocket, code: number, reason: Buffer): void {
  if (ws.readyState === WebSocket.CLOSED || ws.readyState === WebSocket.CLOSING) return;
  // 1005/1006 are never sent on the wire: mirror an abnormal end by cutting the socket.
  if (code === 1000 || (code >= 1001 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)) {
    ws.close(code, reason);
  } else ws.terminate();
}

/**
 * A WebSocket proxy on 127.0.0.1:0 that relays frames one by one (binary flag
 * kept) and lets a test rewrite what the agent sends: `upstream` returns the
 * frames to forward for each agent frame (default: the frame itself).
 */
export class FrameProxy {
  readonly conns: ProxyConn[] = [];
  target = '';
  upstream: (conn: ProxyConn, frame: Frame, index: number) => Frame[] = (_c, f) => [f];
  private wss?: WebSocketServer;

  async start(): Promise<number> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
    this.wss = wss;
    wss.on('error', () => undefined);
    wss.on('connection', (down) => this.relay(down));
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    return (wss.address() as AddressInfo).port;
  }

  private relay(down: WebSocket): void {
    const up = new WebSocket(this.target, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
    const conn = new ProxyConn(down, up);
    this.conns.push(conn);
    down.on('error', () => undefined);
    up.on('error', () => undefined);
    up.on('open', () => conn.flush());
    down.on('message', (data, isBinary) => {
      const f = { data: toBuffer(data), isBinary };
      const index = conn.fromAgent.push(f) - 1;
      for (const out of this.upstream(conn, f, index)) conn.sendUp(out);
    });
    up.on('message', (data, isBinary) => {
      const f = { data: toBuffer(data), isBinary };
      conn.fromController.push(f);
      if (down.readyState === WebSocket.OPEN) down.send(f.data, { binary: f.isBinary });
    });
    down.on('close', (code, reason) => {
      conn.closed = true;
      closeLike(up, code, reason);
    });
    up.on('close', (code, reason) => {
      conn.closed = true;
      closeLike(down, code, reason);
    });
  }

  async stop(): Promise<void> {
    for (const c of this.conns) {
      c.down.terminate();
      c.up.terminate();
    }
    await new Promise<void>((resolve) => (this.wss ? this.wss.close(() => resolve()) : resolve()));
  }
}
