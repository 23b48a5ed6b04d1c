import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeAgentMessage } from './codec.js';
import { ProtocolError } from './errors.js';
import { MAX_DATA_BYTES, MAX_SEALED_FRAME_BYTES, Session } from './session.js';

function pair(): { agent: Session; controller: Session } {
  const a2c = randomBytes(32);
  const c2a = randomBytes(32);
  return { agent: new Session(a2c, c2a), controller: new Session(c2a, a2c) };
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    return (err as ProtocolError).code;
  }
  return 'NO_ERROR';
}

describe('session', () => {
  it('round-trips messages and data frames in order', () => {
    const { agent, controller } = pair();
    const chunk = randomBytes(MAX_DATA_BYTES);
    const f1 = agent.sealMessage({ type: 'ok', id: 1 });
    const f2 = agent.sealData(7, chunk);
    const f3 = agent.sealData(0xffff_ffff, new Uint8Array(0));
    const o1 = controller.open(f1);
    expect(o1.kind === 'message' && decodeAgentMessage(o1.bytes)).toEqual({ type: 'ok', id: 1 });
    const o2 = controller.open(f2);
    expect(o2.kind === 'data' && o2.stream).toBe(7);
    expect(o2.kind === 'data' && o2.chunk.equals(chunk)).toBe(true); // not toEqual: byte-wise deep equality is slow
    expect(controller.open(f3)).toEqual({ kind: 'data', stream: 0xffff_ffff, chunk: Buffer.alloc(0) });
    expect(f2.length).toBe(1 + 4 + MAX_DATA_BYTES + 16);
  });

  it('hides the plaintext', () => {
    const { agent } = pair();
    const frame = agent.sealData(1, Buffer.from('secret secret secret'));
    expect(frame.includes(Buffer.from('secret'))).toBe(false);
  });

  it('rejects a replayed frame', () => {
    const { agent, controller } = pair();
    const f = agent.sealMessage({ type: 'ok', id: 1 });
    controller.open(f);
    expect(codeOf(() => controller.open(f))).toBe('E_AUTH_SEAL');
  });

  it('rejects reordered and dropped frames', () => {
    const { agent, controller } = pair();
    const f1 = agent.sealMessage({ type: 'ok', id: 1 });
    const f2 = agent.sealMessage({ type: 'ok', id: 2 });
    expect(codeOf(() => controller.open(f2))).toBe('E_AUTH_SEAL');
    // a failed open does not advance the counter: the original order still works
    expect(controller.open(f1).kind).toBe('message');
    expect(controller.open(f2).kind).toBe('message');
  });

  it.each([0, 1, 5, -1, -16])('rejects a frame with a bit flipped at %i', (pos) => {
    const { agent, controller } = pair();
    const f = Buffer.from(agent.sealData(1, randomBytes(100)));
    const i = pos < 0 ? f.length + pos : pos;
    f[i] = (f[i] ?? 0) ^ 0x80;
    expect(codeOf(() => controller.open(f))).toBe('E_AUTH_SEAL');
  });

  it('rejects a frame sealed with the wrong direction key (reflected back)', () => {
    const { agent, controller } = pair();
    const f = agent.sealMessage({ type: 'ok', id: 1 });
    expect(codeOf(() => agent.open(f))).toBe('E_AUTH_SEAL');
    expect(controller.open(f).kind).toBe('message');
  });

  it('rejects short, truncated and oversized frames', () => {
    const { agent, controller } = pair();
    expect(codeOf(() => controller.open(Buffer.alloc(0)))).toBe('E_AUTH_SEAL');
    expect(codeOf(() => controller.open(Buffer.alloc(16)))).toBe('E_AUTH_SEAL');
    const f = agent.sealMessage({ type: 'ok', id: 1 });
    expect(codeOf(() => controller.open(f.subarray(0, f.length - 1)))).toBe('E_AUTH_SEAL');
    expect(codeOf(() => controller.open(Buffer.alloc(MAX_SEALED_FRAME_BYTES + 1)))).toBe('E_PROTO_FRAME_TOO_LARGE');
  });

  it('refuses to seal an oversized chunk', () => {
    const { agent } = pair();
    expect(() => agent.sealData(1, Buffer.alloc(MAX_DATA_BYTES + 1))).toThrow(RangeError);
  });
});
