/**
 * Request/response and data streams over a Session, independent of the
 * transport (any socket with send/close/bufferedAmount, e.g. a ws WebSocket).
 */
import { PeerError, ProtocolError } from './errors.js';
import { REPLY_TO, REPLY_TYPES, type DistributiveOmit, type ReplyTo, type RequestType } from './messages.js';
import type { Session } from './session.js';

export interface FrameSocket {
  send(data: Buffer, cb?: (err?: Error) => void): void;
  close(code?: number, reason?: string): void;
  readonly bufferedAmount: number;
}

/** WebSocket close code used when the peer violated the protocol. */
export const CLOSE_POLICY_VIOLATION = 1008;
/** WebSocket close code used by close(). */
export const CLOSE_NORMAL = 1000;

interface Pending<In> {
  /** the reply type this request must get (besides 'error') */
  expects: string;
  request: string;
  resolve: (m: In) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export interface ChannelOptions<In> {
  socket: FrameSocket;
  session: Session;
  decode: (bytes: Buffer) => In;
  /** default 30000 */
  requestTimeoutMs?: number;
}

const noop = (): void => {};

/** The request variants of Out by type, without their id (the channel assigns it). */
export type Requests<Out extends { type: string }> = {
  [T in RequestType & Out['type']]: DistributiveOmit<Extract<Out, { type: T }>, 'id'>;
};

export class Channel<Out extends { type: string }, In extends { type: string }> {
  readonly #socket: FrameSocket;
  readonly #session: Session;
  readonly #decode: (bytes: Buffer) => In;
  readonly #timeoutMs: number;
  readonly #pending = new Map<number, Pending<In>>();
  #nextId = 1;
  #closed = false;

  /** Every decoded message that is not a reply to a pending request (requests, notifications, late replies). */
  onMessage: (msg: In) => void = noop;
  /** Incoming data frames. */
  onData: (stream: number, chunk: Buffer) => void = noop;
  /** Called once on an unopenable/undecodable frame; the channel then closes with 1008. */
  onError: (err: ProtocolError) => void = noop;
  /** Called once when the channel closes, for whatever reason. */
  onClose: (reason: string) => void = noop;

  constructor(opts: ChannelOptions<In>) {
    this.#socket = opts.socket;
    this.#session = opts.session;
    this.#decode = opts.decode;
    this.#timeoutMs = opts.requestTimeoutMs ?? 30_000;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes queued in the socket (for backpressure on data streams). */
  get bufferedAmount(): number {
    return this.#socket.bufferedAmount;
  }

  /**
   * Sends a request (the channel assigns its id) and resolves with the reply
   * carrying that id, which is of the type REPLY_TO names for the request.
   * Rejects with BorgpullError(code, message) on an error reply,
   * E_PROTO_REPLY on a reply of any other type, E_PROTO_TIMEOUT, or
   * E_PROTO_CLOSED.
   */
  request<T extends keyof Requests<Out>>(msg: Requests<Out>[T] & { type: T }, timeoutMs: number = this.#timeoutMs): Promise<ReplyTo<T>> {
    if (this.#closed) return Promise.reject(new ProtocolError('E_PROTO_CLOSED', 'channel is closed'));
    const expects: string | undefined = (REPLY_TO as Record<string, string>)[msg.type];
    if (expects === undefined) return Promise.reject(new ProtocolError('E_PROTO_UNEXPECTED', `'${msg.type}' is not a request`));
    const id = this.#nextId;
    this.#nextId = this.#nextId >= 0xffff_ffff ? 1 : this.#nextId + 1;
    return new Promise<ReplyTo<T>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new ProtocolError('E_PROTO_TIMEOUT', `request "${msg.type}" timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      // The reply's type is checked against `expects` before this resolves (receive()).
      this.#pending.set(id, { expects, request: msg.type, resolve: resolve as unknown as (m: In) => void, reject, timer });
      try {
        this.#send({ ...msg, id } as unknown as Out);
      } catch (err) {
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  /** Sends a message without id (notification). No-op once closed. */
  notify(msg: Out): void {
    if (!this.#closed) this.#send(msg);
  }

  /** Sends a reply; the caller sets its id. No-op once closed. */
  reply(msg: Out): void {
    if (!this.#closed) this.#send(msg);
  }

  /** Sends one data frame (at most MAX_DATA_BYTES). No-op once closed. */
  sendData(stream: number, chunk: Uint8Array, cb?: (err?: Error) => void): void {
    if (this.#closed) return;
    this.#socket.send(this.#session.sealData(stream, chunk), cb);
  }

  #send(msg: Out): void {
    // Out is one of the session message unions; Session validates nothing on send.
    this.#socket.send(this.#session.sealMessage(msg as never));
  }

  /** Feed each incoming binary frame. */
  receive(frame: Buffer): void {
    if (this.#closed) return;
    let data: { stream: number; chunk: Buffer } | undefined;
    let msg: In | undefined;
    try {
      const opened = this.#session.open(frame);
      if (opened.kind === 'data') {
        data = opened;
      } else {
        msg = this.#decode(opened.bytes);
      }
    } catch (err) {
      this.#fail(err);
      return;
    }
    // handlers run outside the try: their exceptions are theirs, not protocol errors
    if (data) {
      this.onData(data.stream, data.chunk);
      return;
    }
    if (msg === undefined) return;
    if (REPLY_TYPES.has(msg.type)) {
      const id = (msg as { id?: unknown }).id;
      const p = typeof id === 'number' ? this.#pending.get(id) : undefined;
      if (p) {
        this.#pending.delete(id as number);
        clearTimeout(p.timer);
        if (msg.type === 'error') {
          const e = msg as unknown as { code: string; message: string };
          p.reject(new PeerError(e.code, e.message));
        } else if (msg.type !== p.expects) {
          // A peer answering with another reply type: the caller would read fields that are not there.
          p.reject(new ProtocolError('E_PROTO_REPLY', `the peer answered '${p.request}' with '${msg.type}', expected '${p.expects}'`));
        } else {
          p.resolve(msg);
        }
        return;
      }
    }
    this.onMessage(msg);
  }

  #fail(err: unknown): void {
    const perr = err instanceof ProtocolError ? err : new ProtocolError('E_PROTO_DECODE', 'undecodable frame', { cause: err });
    this.onError(perr);
    this.#shutdown(`protocol error: ${perr.message}`, CLOSE_POLICY_VIOLATION, perr);
  }

  /** Idempotent: rejects pending requests with E_PROTO_CLOSED and closes the socket. */
  close(reason: string): void {
    this.#shutdown(reason, CLOSE_NORMAL);
  }

  #shutdown(reason: string, code: number, cause?: unknown): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(new ProtocolError('E_PROTO_CLOSED', `channel closed: ${reason}`, cause === undefined ? undefined : { cause }));
    }
    this.#pending.clear();
    try {
      this.#socket.close(code, reason.slice(0, 120));
    } finally {
      this.onClose(reason);
    }
  }
}
