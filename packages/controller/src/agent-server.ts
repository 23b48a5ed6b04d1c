import { createServer as createHttpServer, type Server as HttpServer, type IncomingMessage } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import type { Duplex } from 'node:stream';
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

/**
 * Bytes a peer may send before it has authenticated: its hello (at most ~800
 * bytes: keys, nonce, software, token id) and its auth (~80), with framing.
 * ws has one maxPayload per server and sealed frames after the handshake need
 * MAX_MESSAGE_BYTES (identity reports carry passwd/group/mounts), so the
 * socket's raw bytes are counted while it is unauthenticated instead. Before
 * this, 30 half-open connections held +111 MiB for the whole deadline.
 */
export const PRE_AUTH_MAX_BYTES = 8 * 1024;
/** Largest handshake frame handed to the msgpack decoder (a 4 MiB hello took 0.5-0.8 s of event loop). */
export const PRE_AUTH_MAX_FRAME_BYTES = 4 * 1024;
/**
 * Handshakes in progress (upgraded, not yet authenticated), in total and per
 * source address (an IPv6 /64). Each costs at most PRE_AUTH_MAX_BYTES plus one
 * socket read (64 KiB) for up to the deadline, so the total bounds that memory
 * at ~40 MiB. A pending handshake lasts one round trip (welcome out, auth
 * back) plus ~1 ms of crypto, so 64 per address still lets a fleet behind one
 * NAT re-handshake at 200+/s over a 300 ms path after a controller restart;
 * the ones refused (503) retry with the agents' jittered backoff.
 */
export const MAX_PENDING_HANDSHAKES = 512;
export const MAX_PENDING_PER_ADDRESS = 64;
/** The HTTP upgrade request: ws clients send ~250 bytes of headers; Node's default is 16 KiB. */
export const MAX_HEADER_BYTES = 8 * 1024;

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
  readonly maxPending?: number;
  readonly maxPendingPerAddress?: number;
}

/** The unit pending handshakes are counted by: an IPv4 address, or an IPv6 /64 (one host's usual share). */
export function addressKey(address: string | undefined): string {
  if (!address) return '?';
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (v4) return v4[1]!;
  if (!isIPv6(address)) return address;
  const [head = '', tail = ''] = address.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(listen);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 0 && port <= 65535))
    throw new ControllerError('E_CONFIG_LISTEN', `listen address must be HOST:PORT, got '${listen}'`);
  return { host: m[1] ?? '', port };
}

/** Accepts agent connections: handshake first (with a deadline), then sealed frames only. */
export class AgentServer {
  private http?: HttpServer;
  private wss?: WebSocketServer;
  private readonly links = new Set<AgentLink>();
  private readonly pending = new Set<WebSocket>();
  /** Upgraded but unauthenticated connections, per addressKey(). */
  private readonly pendingByAddress = new Map<string, number>();
  private pendingTotal = 0;
  private refusedSinceLog = 0;
  private lastRefusalLog = 0;

  constructor(private readonly opts: AgentServerOptions) {}

  async start(): Promise<{ host: string; port: number }> {
    const { host, port } = parseListen(this.opts.listen);
    // Headers are bounded in size and time; an upgraded socket leaves these timeouts for the handshake deadline.
    const httpOpts = { maxHeaderSize: MAX_HEADER_BYTES, headersTimeout: HANDSHAKE_DEADLINE_MS, requestTimeout: HANDSHAKE_DEADLINE_MS };
    this.http = this.opts.tlsCert
      ? createHttpsServer({ ...httpOpts, cert: readFileSync(this.opts.tlsCert), key: readFileSync(this.opts.tlsKey ?? '') })
      : createHttpServer(httpOpts);
    this.http.on('request', (_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain' }).end('borgpull controller: WebSocket only\n');
    });
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: MAX_MESSAGE_BYTES + 1024,
      perMessageDeflate: false,
      clientTracking: false,
    });
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.upgrade(req, socket, head));
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
      if (!this.http) {
        resolve();
        return;
      }
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
    this.wss?.close();
  }

  /** Counts the connection as a pending handshake, or refuses it (503) when its address or the server is full. */
  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    const key = addressKey(req.socket.remoteAddress);
    const fromAddress = this.pendingByAddress.get(key) ?? 0;
    const scope =
      this.pendingTotal >= (this.opts.maxPending ?? MAX_PENDING_HANDSHAKES)
        ? 'total'
        : fromAddress >= (this.opts.maxPendingPerAddress ?? MAX_PENDING_PER_ADDRESS)
          ? 'address'
          : undefined;
    if (scope) {
      this.refused(key, scope);
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n');
      // A peer that does not read its answer is not waited for.
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    this.pendingTotal++;
    this.pendingByAddress.set(key, fromAddress + 1);
    let counted = true;
    const release = (): void => {
      if (!counted) return;
      counted = false;
      this.pendingTotal--;
      const n = (this.pendingByAddress.get(key) ?? 1) - 1;
      if (n > 0) this.pendingByAddress.set(key, n);
      else this.pendingByAddress.delete(key);
    };
    socket.once('close', release);
    this.wss!.handleUpgrade(req, socket, head, (ws) => this.accept(ws, req, release));
  }

  /** One log line per refusal burst: a flood of refused connections must not become a flood of log lines. */
  private refused(address: string, scope: 'total' | 'address'): void {
    this.refusedSinceLog++;
    const now = Date.now();
    if (now - this.lastRefusalLog < 1000) return;
    this.opts.log.warn(
      { component: 'agent-server', code: 'E_PROTO_BUSY', scope, address, refused: this.refusedSinceLog, pending: this.pendingTotal },
      'too many pending handshakes, refusing connections',
    );
    this.lastRefusalLog = now;
    this.refusedSinceLog = 0;
  }

  private accept(ws: WebSocket, req: IncomingMessage, release: () => void): void {
    const address = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    const log = this.opts.log.child({ component: 'agent-server', peer: address });
    this.pending.add(ws);
    const hs = new ControllerHandshake({ identity: this.opts.identity, checkAgent: this.opts.checkAgent });
    let step: 'hello' | 'auth' | 'session' = 'hello';
    /** Rejected or cut off: nothing more from this peer is looked at. */
    let done = false;
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
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH')
        log.warn({ code: 'E_PROTO_FRAME_TOO_LARGE', step }, 'frame above the size limit, closing');
      else log.debug({ err: err.message }, 'socket error');
    });
    ws.on('close', () => {
      clearTimeout(deadline);
      this.pending.delete(ws);
    });

    // Raw bytes while unauthenticated, rejected peers included (they could go on
    // sending until the close completes). This listener runs after ws's own, so
    // a chunk that completes the auth was already handled (ws emits messages
    // synchronously on the server) and is not counted.
    const socket = req.socket;
    let preAuthBytes = 0;
    let cut = false;
    const countPreAuth = (chunk: Buffer): void => {
      if (step === 'session' || cut) return;
      preAuthBytes += chunk.length;
      if (preAuthBytes <= PRE_AUTH_MAX_BYTES) return;
      cut = true;
      socket.off('data', countPreAuth);
      if (!done) log.warn({ code: 'E_PROTO_FRAME_TOO_LARGE', step, bytes: preAuthBytes }, 'too many bytes before authentication, closing');
      done = true;
      // Stop reading at once (ws has buffered at most this one chunk), say why, cut it off.
      ws.pause();
      ws.close(1009, 'E_PROTO_FRAME_TOO_LARGE');
      setTimeout(() => ws.terminate(), 1000).unref();
    };
    socket.on('data', countPreAuth);

    const onHandshakeFrame = (data: RawData, isBinary: boolean): void => {
      if (done) return;
      try {
        if (!isBinary) throw new ProtocolError('E_PROTO_DECODE', 'text frames are not part of the protocol');
        const frame = toBuffer(data);
        // One socket read can complete a frame larger than the byte budget before it is counted.
        if (frame.length > PRE_AUTH_MAX_FRAME_BYTES) {
          throw new ProtocolError(
            'E_PROTO_FRAME_TOO_LARGE',
            `handshake frame of ${frame.length} bytes exceeds ${PRE_AUTH_MAX_FRAME_BYTES}`,
          );
        }
        if (step === 'hello') {
          ws.send(hs.onHello(frame));
          step = 'auth';
          return;
        }
        const auth = hs.onAuth(frame);
        step = 'session';
        clearTimeout(deadline);
        ws.off('message', onHandshakeFrame);
        socket.off('data', countPreAuth);
        this.pending.delete(ws);
        release();
        this.established(ws, address, hs, auth, log);
      } catch (err) {
        ws.off('message', onHandshakeFrame);
        done = true;
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
    const link = new AgentLink(
      name,
      address,
      auth.software,
      ws,
      channel,
      log.child({ agentId: name }),
      this.opts.heartbeatMs ?? HEARTBEAT_MS,
    );
    this.links.add(link);
    ws.on('close', (code, reason) => {
      this.links.delete(link);
      link.closed(`connection closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`);
    });
    this.opts.onLink(link);
  }
}
