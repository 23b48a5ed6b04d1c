import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { BorgpullError } from './errors.js';
import {
  decodePublicKey,
  encodePublicKey,
  generateIdentity,
  identityFromSeed,
  keyFingerprint,
  parseIdentity,
  serializeIdentity,
  signMessage,
  verifySignature,
} from './keys.js';

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BorgpullError);
    return (err as BorgpullError).code;
  }
  return 'NO_ERROR';
}

describe('keys', () => {
  it('encodes and decodes public keys', () => {
    const k = generateIdentity();
    const s = encodePublicKey(k.publicKey);
    expect(s).toMatch(/^bp-ed25519:[A-Za-z0-9_-]{43}$/);
    expect(decodePublicKey(s)).toEqual(k.publicKey);
  });

  it.each([
    ['empty', ''],
    ['no prefix', Buffer.alloc(32).toString('base64url')],
    ['wrong prefix', 'bp-rsa:' + Buffer.alloc(32).toString('base64url')],
    ['short', 'bp-ed25519:' + Buffer.alloc(31).toString('base64url')],
    ['long', 'bp-ed25519:' + Buffer.alloc(33).toString('base64url')],
    ['standard base64', 'bp-ed25519:' + Buffer.alloc(32, 0xff).toString('base64')],
    ['non-canonical last char', 'bp-ed25519:' + Buffer.alloc(32).toString('base64url').slice(0, 42) + 'B'],
    ['spaces', 'bp-ed25519: ' + Buffer.alloc(32).toString('base64url')],
  ])('decodePublicKey rejects %s', (_n, s) => {
    expect(code(() => decodePublicKey(s))).toBe('E_CONFIG_KEY');
  });

  it('serializes and parses identities', () => {
    const k = generateIdentity();
    const back = parseIdentity(serializeIdentity(k));
    expect(back.publicKey).toEqual(k.publicKey);
    expect(back.secretKey).toEqual(k.secretKey);
  });

  it.each([
    ['not json', 'nope'],
    ['array', '[]'],
    ['missing fields', '{}'],
    ['short secret', JSON.stringify({ publicKey: Buffer.alloc(32).toString('base64'), secretKey: Buffer.alloc(32).toString('base64') })],
    ['short public', JSON.stringify({ publicKey: Buffer.alloc(31).toString('base64'), secretKey: Buffer.alloc(64).toString('base64') })],
  ])('parseIdentity rejects %s', (_n, s) => {
    expect(code(() => parseIdentity(s))).toBe('E_CONFIG_KEY');
  });

  it('parseIdentity rejects a public key that does not match the seed', () => {
    const a = generateIdentity();
    const b = generateIdentity();
    const mixed = JSON.stringify({
      publicKey: Buffer.from(b.publicKey).toString('base64'),
      secretKey: Buffer.from(a.secretKey).toString('base64'),
    });
    expect(code(() => parseIdentity(mixed))).toBe('E_CONFIG_KEY');
    const tampered = Buffer.from(a.secretKey);
    tampered[40] = (tampered[40] ?? 0) ^ 1; // embedded public half
    const bad = JSON.stringify({ publicKey: Buffer.from(a.publicKey).toString('base64'), secretKey: tampered.toString('base64') });
    expect(code(() => parseIdentity(bad))).toBe('E_CONFIG_KEY');
  });

  it('fingerprints are 16 hex chars and stable', () => {
    const k = generateIdentity();
    expect(keyFingerprint(k.publicKey)).toMatch(/^[0-9a-f]{16}$/);
    expect(keyFingerprint(k.publicKey)).toBe(keyFingerprint(new Uint8Array(k.publicKey)));
  });

  it('identityFromSeed gives the key pair tweetnacl gives for that seed', () => {
    const seed = nacl.randomBytes(32);
    const kp = nacl.sign.keyPair.fromSeed(seed);
    expect(identityFromSeed(seed)).toEqual({ publicKey: kp.publicKey, secretKey: kp.secretKey });
    expect(() => identityFromSeed(seed.subarray(0, 31))).toThrow(BorgpullError);
  });

  it('native signatures interoperate with tweetnacl', () => {
    const k = generateIdentity();
    const msg = Buffer.from('borgpull');
    const sig = signMessage(k, msg);
    expect(nacl.sign.detached.verify(msg, sig, k.publicKey)).toBe(true);
    const naclSig = nacl.sign.detached(msg, k.secretKey);
    expect(verifySignature(k.publicKey, msg, naclSig)).toBe(true);
    expect(Buffer.from(sig)).toEqual(Buffer.from(naclSig)); // ed25519 is deterministic
  });

  it('verifySignature is false for wrong key, message, signature or garbage key', () => {
    const k = generateIdentity();
    const other = generateIdentity();
    const msg = Buffer.from('m');
    const sig = signMessage(k, msg);
    expect(verifySignature(other.publicKey, msg, sig)).toBe(false);
    expect(verifySignature(k.publicKey, Buffer.from('n'), sig)).toBe(false);
    const flipped = Buffer.from(sig);
    flipped[0] = (flipped[0] ?? 0) ^ 1;
    expect(verifySignature(k.publicKey, msg, flipped)).toBe(false);
    expect(verifySignature(k.publicKey, msg, sig.subarray(0, 63))).toBe(false);
    expect(verifySignature(Buffer.alloc(32, 0xff), msg, sig)).toBe(false);
  });
});
