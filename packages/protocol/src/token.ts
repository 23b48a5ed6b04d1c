/**
 * One-time enrollment tokens. The controller keeps only a TokenRecord
 * (sha256 of the secret); the agent proves knowledge of the secret with
 * HMAC-SHA256(key = sha256(secret), proofInput) bound to its handshake.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import nacl from 'tweetnacl';
import { packValue, unpackUntrusted } from './codec.js';
import { BorgpullError } from './errors.js';

export const TOKEN_PREFIX = 'bpt1.';

export interface TokenRecord {
  /** random 16 hex chars */
  id: string;
  /** agent name chosen by the admin */
  name: string;
  /** hex sha256 of the secret; also the HMAC key for proofs */
  secretHash: string;
  /** ms since epoch */
  expiresAt: number;
}

export interface ParsedToken {
  url: string;
  controllerKey: Uint8Array;
  id: string;
  secret: Uint8Array;
  expiresAt: number;
}

const MAX_TOKEN_CHARS = 4096;
const ID_RE = /^[0-9a-f]{16}$/;
const B64URL_RE = /^[A-Za-z0-9_-]+$/;

function malformed(): BorgpullError {
  return new BorgpullError('E_AUTH_TOKEN', 'malformed enrollment token');
}

export function createToken(opts: {
  url: string;
  controllerKey: Uint8Array;
  name: string;
  ttlMs: number;
  now?: number;
}): { token: string; record: TokenRecord } {
  if (opts.controllerKey.length !== 32) throw new BorgpullError('E_CONFIG_KEY', 'controller key must be 32 bytes');
  if (!Number.isFinite(opts.ttlMs) || opts.ttlMs <= 0) throw new BorgpullError('E_AUTH_TOKEN', 'token ttl must be positive');
  const id = Buffer.from(nacl.randomBytes(8)).toString('hex');
  const secret = nacl.randomBytes(32);
  const expiresAt = Math.floor((opts.now ?? Date.now()) + opts.ttlMs);
  const body = packValue({ u: opts.url, k: Buffer.from(opts.controllerKey), i: id, s: Buffer.from(secret), e: expiresAt });
  const token = TOKEN_PREFIX + body.toString('base64url');
  const record: TokenRecord = {
    id,
    name: opts.name,
    secretHash: Buffer.from(tokenProofKey(secret)).toString('hex'),
    expiresAt,
  };
  return { token, record };
}

/** Parses and strictly validates a token string; E_AUTH_TOKEN 'malformed enrollment token' on any problem. */
export function parseToken(s: string): ParsedToken {
  if (typeof s !== 'string') throw malformed();
  const t = s.trim();
  if (!t.startsWith(TOKEN_PREFIX) || t.length > MAX_TOKEN_CHARS) throw malformed();
  const body = t.slice(TOKEN_PREFIX.length);
  if (!B64URL_RE.test(body)) throw malformed();
  let v: unknown;
  try {
    v = unpackUntrusted(Buffer.from(body, 'base64url'), MAX_TOKEN_CHARS);
  } catch {
    throw malformed();
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v) || Object.getPrototypeOf(v) !== Object.prototype) {
    throw malformed();
  }
  const r = v as Record<string, unknown>;
  const { u, k, i, s: secret, e } = r;
  if (typeof u !== 'string' || u.length === 0 || u.length > 2048 || !isUrl(u)) throw malformed();
  if (!(k instanceof Uint8Array) || k.length !== 32) throw malformed();
  if (typeof i !== 'string' || !ID_RE.test(i)) throw malformed();
  if (!(secret instanceof Uint8Array) || secret.length !== 32) throw malformed();
  if (typeof e !== 'number' || !Number.isSafeInteger(e) || e <= 0) throw malformed();
  return { url: u, controllerKey: new Uint8Array(k), id: i, secret: new Uint8Array(secret), expiresAt: e };
}

function isUrl(u: string): boolean {
  try {
    const p = new URL(u).protocol;
    return p === 'ws:' || p === 'wss:' || p === 'http:' || p === 'https:';
  } catch {
    return false;
  }
}

/** The HMAC key for proofs: sha256(secret). The controller has it as Buffer.from(record.secretHash, 'hex'). */
export function tokenProofKey(secret: Uint8Array): Uint8Array {
  return createHash('sha256').update(secret).digest();
}

/** HMAC-SHA256(key, transcript). */
export function tokenProof(key: Uint8Array, transcript: Uint8Array): Uint8Array {
  return createHmac('sha256', key).update(transcript).digest();
}

/** Constant-time check of a proof against the record's secretHash (hex). */
export function verifyTokenProof(keyHex: string, proofInput: Uint8Array, proof: Uint8Array): boolean {
  if (typeof keyHex !== 'string' || !/^[0-9a-f]{64}$/i.test(keyHex) || proof.length !== 32) return false;
  const expected = tokenProof(Buffer.from(keyHex, 'hex'), proofInput);
  return timingSafeEqual(expected, proof);
}

/**
 * The checks a controller's AgentCheck does for an enrolling agent. `record`
 * is the stored, unused record for enroll.tokenId (undefined if unknown or
 * already used). Throws E_AUTH_TOKEN saying what is wrong. Does NOT consume
 * the token: consume it only after ControllerHandshake.onAuth succeeds.
 */
export function checkEnrollment(
  record: TokenRecord | undefined,
  enroll: { tokenId: string; proof: Uint8Array; proofInput: Uint8Array },
  now: number = Date.now(),
): void {
  if (!record || record.id !== enroll.tokenId) {
    throw new BorgpullError('E_AUTH_TOKEN', 'unknown or already used enrollment token');
  }
  if (now >= record.expiresAt) throw new BorgpullError('E_AUTH_TOKEN', 'enrollment token expired');
  if (!verifyTokenProof(record.secretHash, enroll.proofInput, enroll.proof)) {
    throw new BorgpullError('E_AUTH_TOKEN', 'enrollment token proof is forged');
  }
}
