/**
 * WebSocket at the byte level, for peers a ws client cannot play: many cheap
 * connections from chosen loopback addresses (all of 127/8 is ours on Linux)
 * that upgrade and then start one huge frame, sending its payload from one
 * shared buffer so the test itself stays small.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export class RawUpgrade {
  /** HTTP status of the upgrade answer (101 when accepted). */
  status = 0;
  /** Payload bytes handed to the socket so far. */
  sent = 0;
  closed = false;
  private constructor(readonly socket: Socket) {}

  /** Connects from `localAddress` and sends the upgrade request; resolves with the answer's status. */
  static open(port: number, localAddress: string): Promise<RawUpgrade> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, localAddress });
      const c = new RawUpgrade(socket);
      let head = '';
      socket.on('error', () => undefined);
      socket.on('close', () => {
        c.closed = true;
        if (c.status === 0) reject(new Error(`connection from ${localAddress} closed before an upgrade answer`));
      });
      const onData = (chunk: Buffer): void => {
        head += chunk.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        c.status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? -1);
        // Keep reading (and dropping) whatever the server sends next, close frames included.
        socket.resume();
        resolve(c);
      };
      socket.on('data', onData);
      socket.once('connect', () => {
        socket.write(
          'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
    });
  }

  /**
   * Starts one masked binary frame announcing `length` payload bytes and sends
   * up to `upTo` of them (from `chunk`, reused), as fast as the socket takes
   * them; stops early when the connection closes or `stop()` says so.
   */
  startFrame(length: number, upTo: number, chunk: Buffer, stop: () => boolean): Promise<void> {
    const header = Buffer.alloc(14);
    header[0] = 0x82; // FIN + binary
    header[1] = 0x80 | 127; // masked, 64-bit length
    header.writeBigUInt64BE(BigInt(length), 2);
    randomBytes(4).copy(header, 10);
    this.socket.write(header);
    return new Promise((resolve) => {
      const pump = (): void => {
        while (!this.closed && !stop() && this.sent < upTo) {
          const n = Math.min(chunk.length, upTo - this.sent);
          this.sent += n;
          if (!this.socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
            this.socket.once('drain', pump);
            return;
          }
        }
        resolve();
      };
      this.socket.once('close', () => resolve());
      pump();
    });
  }

  destroy(): void {
    this.socket.destroy();
  }
}
