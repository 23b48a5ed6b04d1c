import { createServer as createHttpServer, type Server as HttpServer, type IncomingMessage } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import {
  BorgpullError,
  Channel,
  ControllerHandshake,
  ProtocolError,
  MAX_MESSAGE_BYTES,
  decodeAgentMessage,
  encodeMessage,
  toBuffer,
  type AgentCheck,
  type AgentMessage,
  type ControllerMessage,
  type IdentityKeys,
} from '@borgpull/protocol';
import { AgentLink } from './agent-link.js';
import { ControllerError } from './errors.js';

export const HANDSHAKE_DEADLINE_MS = 10_000;
export const HEARTBEAT_MS = 15_000;

export interface AgentServerOptions {
  readonly listen: string;
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly identity: IdentityKeys;
  readonly checkAgent: AgentCheck;
  /** Known agent authenticated: returns its name. */
  readonly nameOf: (agentKey: Uint8Array) => string;
  readonly onLink: (link: AgentLink) => void;
  /** Enrollment handshake passed: the callback owns the channel until it closes it. */
  readonly onEnrollment: (
    tokenId: string,
    agentKey: Uint8Array,
    software: string,
    channel: Channel<ControllerMessage, AgentMessage>,
    close: () => void,
  ) => void;
  readonly log: Logger;
  readonly heartbeatMs?: number;
  readonly handshakeDeadlineMs?: number;
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(listen);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new ControllerError('E_CONFIG_LISTEN', `listen address must be HOST:PORT, got '${listen}'`);
  return { host: m[1] ?? '', port };
}

/** Accepts agent connections: handshake first (with a deadline), then sealed frames only. */
export class AgentServer {
  private http?: HttpServer;
  private wss?: WebSocketServer;
  private readonly links = new Set<AgentLink>();
  private readonly pending = new Set<WebSocket>();

  constructor(private readonly opts: AgentServerOptions) {}

  async start(): Promise<{ host: string; port: number }> {
    const { host, port } = parseListen(this.opts.listen);
    this.http = this.opts.tlsCert
      ? createHttpsServer({ cert: readFileSync(this.opts.tlsCert), key: readFileSync(this.opts.tlsKey ?? '') })
      : createHttpServer();
    this.http.on('request', (_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain' }).end('borgpull controller: WebSocket only\n');
    });
    this.wss = new WebSocketServer({
      server: this.http,
      maxPayload: MAX_MESSAGE_BYTES + 1024,
      perMessageDeflate: false,
      clientTracking: false,
    });
    this.wss.on('connection', (ws, req) => this.accept(ws, req));
    this.wss.on('error', (err) => this.opts.log.error({ err }, 'websocket server error'));
    await new Promise<void>((resolve, reject) => {
      this.http!.once('error', reject);
      this.http!.listen(port, host, () => resolve());
    });
    const addr = this.http.address();
    const bound = typeof addr === 'object' && addr ? { host: addr.address, port: addr.port } : { host, port };
    this.opts.log.info(bound, 'listening for agents');
    return bound;
  }

  /** Stop accepting, close every agent connection, close the server. */
  async stop(reason: string): Promise<void> {
    for (const ws of this.pending) ws.terminate();
    for (const l of this.links) l.close(1001, reason);
    await new Promise<void>((resolve) => {
      if (!this.http) return resolve();
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
    this.wss?.close();
  }

  private accept(ws: WebSocket, req: IncomingMessage): void {
    const address = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    const log = this.opts.log.child({ component: 'agent-server', peer: address });
    this.pending.add(ws);
    const hs = new ControllerHandshake({ identity: this.opts.identity, checkAgent: this.opts.checkAgent });
    let step: 'hello' | 'auth' | 'session' = 'hello';
    const deadline = setTimeout(() => {
      log.warn({ code: 'E_PROTO_TIMEOUT', step }, 'handshake deadline passed, closing');
      ws.terminate();
    }, this.opts.handshakeDeadlineMs ?? HANDSHAKE_DEADLINE_MS);

    const reject = (err: unknown): void => {
      const code = err instanceof BorgpullError ? err.code : 'E_PROTO_HANDSHAKE';
      const message = err instanceof Error ? err.message : String(err);
      log.warn({ code, step }, 'connection rejected');
      if (ws.readyState === ws.OPEN) {
        ws.send(encodeMessage({ type: 'error', code, message }), () => ws.close(1008, code));
        setTimeout(() => ws.terminate(), 1000).unref();
      }
    };

    ws.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') log.warn({ code: 'E_PROTO_FRAME_TOO_LARGE', step }, 'frame above the size limit, closing');
      else log.debug({ err: err.message }, 'socket error');
    });
    ws.on('close', () => {
      clearTimeout(deadline);
      this.pending.delete(ws);
    });
    const onHandshakeFrame = (data: RawData, isBinary: boolean): void => {
      try {
        if (!isBinary) throw new ProtocolError('E_PROTO_DECODE', 'text frames are not part of the protocol');
        const frame = toBuffer(data);
        if (step === 'hello') {
          ws.send(hs.onHello(frame));
          step = 'auth';
          return;
        }
        const auth = hs.onAuth(frame);
        step = 'session';
        clearTimeout(deadline);
        ws.off('message', onHandshakeFrame);
        this.pending.delete(ws);
        this.established(ws, address, hs, auth, log);
      } catch (err) {
        ws.off('message', onHandshakeFrame);
        reject(err);
      }
    };
    ws.on('message', onHandshakeFrame);
  }

  private established(
    ws: WebSocket,
    address: string,
    hs: ControllerHandshake,
    auth: { agentKey: Uint8Array; software: string; enroll?: { tokenId: string } },
    log: Logger,
  ): void {
    const channel = new Channel<ControllerMessage, AgentMessage>({
      socket: ws,
      session: hs.session(),
      decode: decodeAgentMessage,
    });
    channel.onError = (err) => log.warn({ code: err.code, reason: err.message }, 'bad frame from agent, closing');
    ws.on('message', (data, isBinary) => {
      if (!isBinary) {
        log.warn({ code: 'E_PROTO_DECODE' }, 'text frame from agent, closing');
        channel.close('bad frame');
        ws.close(1008, 'E_PROTO_DECODE');
        return;
      }
      channel.receive(toBuffer(data));
    });
    if (auth.enroll) {
      ws.on('close', () => channel.close('socket closed'));
      this.opts.onEnrollment(auth.enroll.tokenId, auth.agentKey, auth.software, channel, () => ws.close(1000, 'enrolled'));
      return;
    }
    const name = this.opts.nameOf(auth.agentKey);
    const link = new AgentLink(name, address, auth.software, ws, channel, log.child({ agentId: name }), this.opts.heartbeatMs ?? HEARTBEAT_MS);
    this.links.add(link);
    ws.on('close', (code, reason) => {
      this.links.delete(link);
      link.closed(`connection closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`);
    });
    this.opts.onLink(link);
  }
}
