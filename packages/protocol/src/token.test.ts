import { describe, expect, it } from 'vitest';
import { packValue } from './codec.js';
import { BorgpullError } from './errors.js';
import { generateIdentity } from './keys.js';
import { checkEnrollment, createToken, parseToken, tokenProof, tokenProofKey, verifyTokenProof } from './token.js';

const controller = generateIdentity();

function err(fn: () => unknown): BorgpullError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(BorgpullError);
    return e as BorgpullError;
  }
  throw new Error('expected a throw');
}

describe('tokens', () => {
  it('round-trips and stores only the secret hash', () => {
    const { token, record } = createToken({ url: 'wss://backup.example:8443', controllerKey: controller.publicKey, name: 'web1', ttlMs: 60_000, now: 1000 });
    expect(token.startsWith('bpt1.')).toBe(true);
    const p = parseToken(token);
    expect(p.url).toBe('wss://backup.example:8443');
    expect(p.controllerKey).toEqual(controller.publicKey);
    expect(p.id).toBe(record.id);
    expect(p.expiresAt).toBe(61_000);
    expect(record).toEqual({ id: p.id, name: 'web1', secretHash: Buffer.from(tokenProofKey(p.secret)).toString('hex'), expiresAt: 61_000 });
    expect(JSON.stringify(record)).not.toContain(Buffer.from(p.secret).toString('hex'));
  });

  const good = createToken({ url: 'ws://127.0.0.1:1', controllerKey: controller.publicKey, name: 'n', ttlMs: 1 }).token;
  const body = (o: Record<string, unknown>): string => 'bpt1.' + packValue(o).toString('base64url');
  const fields = { u: 'ws://h', k: Buffer.alloc(32), i: '0123456789abcdef', s: Buffer.alloc(32), e: 5 };
  it.each([
    ['empty', ''],
    ['wrong prefix', good.replace('bpt1.', 'bpt2.')],
    ['bad base64', good + '!'],
    ['truncated', good.slice(0, good.length - 10)],
    ['not a map', 'bpt1.' + packValue([1, 2]).toString('base64url')],
    ['url not a url', body({ ...fields, u: 'not a url' })],
    ['url file scheme', body({ ...fields, u: 'file:///etc/passwd' })],
    ['key short', body({ ...fields, k: Buffer.alloc(31) })],
    ['id not hex', body({ ...fields, i: 'zzzzzzzzzzzzzzzz' })],
    ['secret missing', body({ ...fields, s: undefined })],
    ['expiry string', body({ ...fields, e: '5' })],
    ['huge', 'bpt1.' + 'A'.repeat(10_000)],
  ])('parseToken rejects %s', (_n, s) => {
    const e = err(() => parseToken(s));
    expect(e.code).toBe('E_AUTH_TOKEN');
    expect(e.message).toBe('malformed enrollment token');
  });

  it('proofs verify with the stored hash and fail otherwise', () => {
    const { token, record } = createToken({ url: 'ws://h', controllerKey: controller.publicKey, name: 'n', ttlMs: 1000 });
    const p = parseToken(token);
    const input = Buffer.from('transcript');
    const proof = tokenProof(tokenProofKey(p.secret), input);
    expect(verifyTokenProof(record.secretHash, input, proof)).toBe(true);
    expect(verifyTokenProof(record.secretHash, Buffer.from('other'), proof)).toBe(false);
    expect(verifyTokenProof(record.secretHash, input, proof.subarray(0, 31))).toBe(false);
    expect(verifyTokenProof('nothex', input, proof)).toBe(false);
    // the secret itself is not the key
    expect(verifyTokenProof(record.secretHash, input, tokenProof(p.secret, input))).toBe(false);
  });

  it('checkEnrollment says what is wrong', () => {
    const { token, record } = createToken({ url: 'ws://h', controllerKey: controller.publicKey, name: 'n', ttlMs: 1000, now: 0 });
    const p = parseToken(token);
    const proofInput = Buffer.from('x');
    const proof = tokenProof(tokenProofKey(p.secret), proofInput);
    expect(() => checkEnrollment(record, { tokenId: p.id, proof, proofInput }, 500)).not.toThrow();
    expect(err(() => checkEnrollment(undefined, { tokenId: p.id, proof, proofInput }, 500)).message).toMatch(/unknown or already used/);
    expect(err(() => checkEnrollment(record, { tokenId: p.id, proof, proofInput }, 1000)).message).toMatch(/expired/);
    expect(err(() => checkEnrollment(record, { tokenId: p.id, proof: Buffer.alloc(32), proofInput }, 500)).message).toMatch(/forged/);
  });
});
