/**
 * Sealed post-handshake frames: ChaCha20-Poly1305 (node:crypto) with an
 * implicit per-direction counter nonce (4 zero bytes || uint64 BE), so a
 * replayed, dropped, reordered or forged frame fails to open (E_AUTH_SEAL).
 *
 * Wire: ciphertext || 16-byte tag. Plaintext: kind byte, then
 *   0x00: msgpack message bytes
 *   0x01: uint32 BE stream id, raw payload bytes (no msgpack, no copy)
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { MAX_MESSAGE_BYTES, encodeMessage } from './codec.js';
import { ProtocolError } from './errors.js';
import type { AgentMessage, ControllerMessage } from './messages.js';

/** Largest payload of one data frame. */
export const MAX_DATA_BYTES = 1024 * 1024;
const TAG_BYTES = 16;
const KIND_MESSAGE = 0x00;
const KIND_DATA = 0x01;
const DATA_HEADER_BYTES = 5;
/** Largest sealed frame accepted by open(). */
export const MAX_SEALED_FRAME_BYTES = Math.max(MAX_MESSAGE_BYTES + 1, MAX_DATA_BYTES + DATA_HEADER_BYTES) + TAG_BYTES;
const MESSAGE_KIND = Buffer.from([KIND_MESSAGE]);
const ALGO = 'chacha20-poly1305';

export type OpenedFrame = { kind: 'message'; bytes: Buffer } | { kind: 'data'; stream: number; chunk: Buffer };

function nonceFor(counter: number): Buffer {
  const n = Buffer.alloc(12);
  n.writeUInt32BE(Math.floor(counter / 0x1_0000_0000), 4);
  n.writeUInt32BE(counter >>> 0, 8);
  return n;
}

export class Session {
  readonly #sendKey: Buffer;
  readonly #recvKey: Buffer;
  #sendCounter = 0;
  #recvCounter = 0;

  /** Keys are 32 bytes each; the handshake derives them. */
  constructor(sendKey: Uint8Array, receiveKey: Uint8Array) {
    if (sendKey.length !== 32 || receiveKey.length !== 32) throw new RangeError('session keys must be 32 bytes');
    this.#sendKey = Buffer.from(sendKey);
    this.#recvKey = Buffer.from(receiveKey);
  }

  sealMessage(m: ControllerMessage | AgentMessage): Buffer {
    return this.#seal(MESSAGE_KIND, encodeMessage(m));
  }

  sealData(stream: number, chunk: Uint8Array): Buffer {
    if (!Number.isInteger(stream) || stream < 0 || stream > 0xffff_ffff) throw new RangeError('stream id must be a uint32');
    if (chunk.length > MAX_DATA_BYTES) throw new RangeError(`data chunk larger than ${MAX_DATA_BYTES} bytes`);
    const header = Buffer.allocUnsafe(DATA_HEADER_BYTES);
    header[0] = KIND_DATA;
    header.writeUInt32BE(stream, 1);
    return this.#seal(header, chunk);
  }

  #seal(header: Uint8Array, body: Uint8Array): Buffer {
    if (this.#sendCounter >= Number.MAX_SAFE_INTEGER) throw new ProtocolError('E_AUTH_SEAL', 'session nonce exhausted');
    const cipher = createCipheriv(ALGO, this.#sendKey, nonceFor(this.#sendCounter++), { authTagLength: TAG_BYTES });
    const a = cipher.update(header);
    const b = cipher.update(body);
    const c = cipher.final();
    return Buffer.concat([a, b, c, cipher.getAuthTag()], a.length + b.length + c.length + TAG_BYTES);
  }

  /** Opens the next frame from the peer. Throws E_PROTO_FRAME_TOO_LARGE, E_AUTH_SEAL or E_PROTO_DECODE. */
  open(frame: Uint8Array): OpenedFrame {
    if (frame.length > MAX_SEALED_FRAME_BYTES) {
      throw new ProtocolError('E_PROTO_FRAME_TOO_LARGE', `sealed frame of ${frame.length} bytes exceeds ${MAX_SEALED_FRAME_BYTES}`);
    }
    if (frame.length < TAG_BYTES + 1) throw new ProtocolError('E_AUTH_SEAL', 'sealed frame too short');
    const split = frame.length - TAG_BYTES;
    let plain: Buffer;
    try {
      const decipher = createDecipheriv(ALGO, this.#recvKey, nonceFor(this.#recvCounter), { authTagLength: TAG_BYTES });
      decipher.setAuthTag(frame.subarray(split));
      const a = decipher.update(frame.subarray(0, split));
      const b = decipher.final();
      plain = b.length === 0 ? a : Buffer.concat([a, b]);
    } catch (err) {
      throw new ProtocolError('E_AUTH_SEAL', 'frame failed authentication (forged, replayed or reordered)', { cause: err });
    }
    this.#recvCounter++;
    const kind = plain[0];
    if (kind === KIND_MESSAGE) return { kind: 'message', bytes: plain.subarray(1) };
    if (kind === KIND_DATA) {
      if (plain.length < DATA_HEADER_BYTES) throw new ProtocolError('E_PROTO_DECODE', 'data frame too short');
      return { kind: 'data', stream: plain.readUInt32BE(1), chunk: plain.subarray(DATA_HEADER_BYTES) };
    }
    throw new ProtocolError('E_PROTO_DECODE', `unknown frame kind ${String(kind)}`);
  }
}
