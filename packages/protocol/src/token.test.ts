import { createHash, createHmac } from 'node:crypto';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { packValue } from './codec.js';
import { BorgpullError } from './errors.js';
import { generateIdentity, signMessage } from './keys.js';
import { checkEnrollment, createToken, parseToken, tokenProof, tokenSigningKey, verifyTokenProof, type TokenRecord } from './token.js';

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
  it('round-trips and stores only a verifier (the public half of the token key)', () => {
    const { token, record } = createToken({
      url: 'wss://backup.example:8443',
      controllerKey: controller.publicKey,
      name: 'web1',
      ttlMs: 60_000,
      now: 1000,
    });
    expect(token.startsWith('bpt1.')).toBe(true);
    const p = parseToken(token);
    expect(p.url).toBe('wss://backup.example:8443');
    expect(p.controllerKey).toEqual(controller.publicKey);
    expect(p.id).toBe(record.id);
    expect(p.expiresAt).toBe(61_000);
    expect(record).toEqual({
      id: p.id,
      name: 'web1',
      verifier: Buffer.from(tokenSigningKey(p.secret).publicKey).toString('base64url'),
      expiresAt: 61_000,
    });
    const json = JSON.stringify(record);
    for (const secretish of [
      p.secret,
      createHash('sha256').update(p.secret).digest(),
      tokenSigningKey(p.secret).secretKey.subarray(0, 32),
    ]) {
      expect(json).not.toContain(Buffer.from(secretish).toString('hex'));
      expect(json).not.toContain(Buffer.from(secretish).toString('base64url'));
    }
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

  it('proofs verify with the stored verifier and fail otherwise', () => {
    const { token, record } = createToken({ url: 'ws://h', controllerKey: controller.publicKey, name: 'n', ttlMs: 1000 });
    const p = parseToken(token);
    const input = Buffer.from('transcript');
    const proof = tokenProof(tokenSigningKey(p.secret), input);
    expect(proof).toHaveLength(64);
    expect(verifyTokenProof(record.verifier, input, proof)).toBe(true);
    expect(verifyTokenProof(record.verifier, Buffer.from('other'), proof)).toBe(false);
    expect(verifyTokenProof(record.verifier, input, proof.subarray(0, 63))).toBe(false);
    expect(verifyTokenProof('not base64url!', input, proof)).toBe(false);
    expect(verifyTokenProof(undefined, input, proof)).toBe(false);
    // the secret itself is not the signing key
    expect(verifyTokenProof(record.verifier, input, signMessage(nacl.sign.keyPair.fromSeed(p.secret), input))).toBe(false);
  });

  it('whoever reads the stored record cannot make a proof from it', () => {
    const { token, record } = createToken({ url: 'ws://h', controllerKey: controller.publicKey, name: 'n', ttlMs: 1000, now: 0 });
    const p = parseToken(token);
    const proofInput = createHash('sha256').update('a hello').digest();
    // The genuine proof is accepted, so a refusal below is about the forgery.
    expect(() =>
      checkEnrollment(record, { tokenId: p.id, proof: tokenProof(tokenSigningKey(p.secret), proofInput), proofInput }, 1),
    ).not.toThrow();

    // Every value stored in the record (as the registry writes it), read every obvious way, used every obvious way.
    const stored = JSON.parse(JSON.stringify(record)) as Record<string, unknown>;
    const keys: Buffer[] = [];
    for (const v of Object.values(stored)) {
      if (typeof v !== 'string') continue;
      keys.push(Buffer.from(v, 'utf8'));
      if (/^[0-9a-f]+$/i.test(v) && v.length % 2 === 0) keys.push(Buffer.from(v, 'hex'));
      if (/^[A-Za-z0-9_-]+$/.test(v)) keys.push(Buffer.from(v, 'base64url'));
    }
    const forgeries: Uint8Array[] = [];
    for (const k of keys) {
      forgeries.push(createHmac('sha256', k).update(proofInput).digest()); // the old proof
      forgeries.push(createHmac('sha512', k).update(proofInput).digest());
      if (k.length === 32) {
        forgeries.push(signMessage(nacl.sign.keyPair.fromSeed(k), proofInput)); // as an ed25519 seed
        forgeries.push(tokenProof(tokenSigningKey(k), proofInput)); // as a token secret
      }
    }
    expect(forgeries.length).toBeGreaterThan(8);
    for (const proof of forgeries) {
      expect(() => checkEnrollment(record, { tokenId: p.id, proof, proofInput }, 1)).toThrow(BorgpullError);
    }
  });

  it('a record from before verifiers (secretHash) is refused with its own code, saying what to do', () => {
    const { token, record } = createToken({ url: 'ws://h', controllerKey: controller.publicKey, name: 'n', ttlMs: 1000, now: 0 });
    const p = parseToken(token);
    const old = {
      id: record.id,
      name: 'n',
      secretHash: createHash('sha256').update(p.secret).digest('hex'),
      expiresAt: record.expiresAt,
    } as unknown as TokenRecord;
    const proofInput = Buffer.from('x');
    const e = err(() => checkEnrollment(old, { tokenId: p.id, proof: tokenProof(tokenSigningKey(p.secret), proofInput), proofInput }, 1));
    expect(e.code).toBe('E_AUTH_TOKEN_FORMAT');
    expect(e.message).toMatch(/older controller.*controller token NAME/);
  });

  it('checkEnrollment says what is wrong', () => {
    const { token, record } = createToken({ url: 'ws://h', controllerKey: controller.publicKey, name: 'n', ttlMs: 1000, now: 0 });
    const p = parseToken(token);
    const proofInput = Buffer.from('x');
    const proof = tokenProof(tokenSigningKey(p.secret), proofInput);
    expect(() => checkEnrollment(record, { tokenId: p.id, proof, proofInput }, 500)).not.toThrow();
    expect(err(() => checkEnrollment(undefined, { tokenId: p.id, proof, proofInput }, 500)).message).toMatch(/unknown or already used/);
    expect(err(() => checkEnrollment(record, { tokenId: p.id, proof, proofInput }, 1000)).message).toMatch(/expired/);
    expect(err(() => checkEnrollment(record, { tokenId: p.id, proof: Buffer.alloc(64), proofInput }, 500)).message).toMatch(/forged/);
  });
});
