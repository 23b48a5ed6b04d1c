/**
 * One-time enrollment tokens. The token carries a 32-byte secret; an ed25519
 * key pair is derived from it (HKDF-SHA256 -> seed). The agent signs its
 * handshake's proof input with that key; the controller keeps only the
 * public half (the verifier) in its TokenRecord. Whoever reads the registry
 * can check a proof but cannot make one (the old record held sha256(secret),
 * which was itself the HMAC key the proof was made with).
 */
import { hkdfSync } from 'node:crypto';
import nacl from 'tweetnacl';
import { packValue, unpackUntrusted } from './codec.js';
import { ProtocolError } from './errors.js';
import { identityFromSeed, signMessage, verifySignature, type IdentityKeys } from './keys.js';

export const TOKEN_PREFIX = 'bpt1.';

export interface TokenRecord {
  /** random 16 hex chars */
  id: string;
  /** agent name chosen by the admin */
  name: string;
  /** base64url of the token key's ed25519 public key: verifies proofs, cannot make one */
  verifier: string;
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

function malformed(): ProtocolError {
  return new ProtocolError('E_AUTH_TOKEN', 'malformed enrollment token');
}

export function createToken(opts: { url: string; controllerKey: Uint8Array; name: string; ttlMs: number; now?: number }): {
  token: string;
  record: TokenRecord;
} {
  if (opts.controllerKey.length !== 32) throw new ProtocolError('E_CONFIG_KEY', 'controller key must be 32 bytes');
  if (!Number.isFinite(opts.ttlMs) || opts.ttlMs <= 0) throw new ProtocolError('E_AUTH_TOKEN', 'token ttl must be positive');
  const id = Buffer.from(nacl.randomBytes(8)).toString('hex');
  const secret = nacl.randomBytes(32);
  const expiresAt = Math.floor((opts.now ?? Date.now()) + opts.ttlMs);
  const body = packValue({ u: opts.url, k: Buffer.from(opts.controllerKey), i: id, s: Buffer.from(secret), e: expiresAt });
  const token = TOKEN_PREFIX + body.toString('base64url');
  const record: TokenRecord = {
    id,
    name: opts.name,
    verifier: Buffer.from(tokenSigningKey(secret).publicKey).toString('base64url'),
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

const VERIFIER_RE = /^[A-Za-z0-9_-]{43}$/;
const KEY_INFO = 'borgpull-enroll-key-v1';

/** The token's ed25519 key pair: seed = HKDF-SHA256(secret, info "borgpull-enroll-key-v1"). Only the agent has it. */
export function tokenSigningKey(secret: Uint8Array): IdentityKeys {
  if (secret.length !== 32) throw new ProtocolError('E_AUTH_TOKEN', 'a token secret is 32 bytes');
  return identityFromSeed(new Uint8Array(hkdfSync('sha256', secret, new Uint8Array(0), KEY_INFO, 32)));
}

/** The enrollment proof: an ed25519 signature (64 bytes) of the handshake's proof input. */
export function tokenProof(key: IdentityKeys, proofInput: Uint8Array): Uint8Array {
  return signMessage(key, proofInput);
}

/** Checks a proof against a record's verifier (base64url public key); false for anything malformed. */
export function verifyTokenProof(verifier: unknown, proofInput: Uint8Array, proof: Uint8Array): boolean {
  if (typeof verifier !== 'string' || !VERIFIER_RE.test(verifier) || proof.length !== 64) return false;
  return verifySignature(Buffer.from(verifier, 'base64url'), proofInput, proof);
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
    throw new ProtocolError('E_AUTH_TOKEN', 'unknown or already used enrollment token');
  }
  if (now >= record.expiresAt) throw new ProtocolError('E_AUTH_TOKEN', 'enrollment token expired');
  if (typeof (record as { verifier?: unknown }).verifier !== 'string') throw legacyToken();
  if (!verifyTokenProof(record.verifier, enroll.proofInput, enroll.proof)) {
    throw new ProtocolError('E_AUTH_TOKEN', 'enrollment token proof is forged');
  }
}

/** A record written before tokens had verifiers (it holds a `secretHash`): it can no longer be checked. */
export function legacyToken(): ProtocolError {
  return new ProtocolError(
    'E_AUTH_TOKEN_FORMAT',
    "this enrollment token was issued by an older controller and cannot be checked any more: issue a new one ('controller token NAME')",
  );
}
