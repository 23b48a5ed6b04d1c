/**
 * Mutual, signed handshake with ephemeral x25519 keys. Transport-agnostic
 * state machines: feed frames in, get frames out.
 *
 *   agent -> hello   {v, agentKey, eph_a, nonce_a, software, enroll?}
 *   controller -> welcome {v, controllerKey, eph_c, nonce_c, sig_c}
 *   agent -> auth    {sig_a}
 *
 * th    = sha256("borgpull-handshake-v1" || helloBytes || welcomeUnsigned)
 *         helloBytes: the hello frame exactly as sent/received;
 *         welcomeUnsigned: msgpack of the map {type:'welcome', v, controllerKey, eph, nonce}
 *         (keys in that order, minimal encodings: what encodeMessage produces).
 * sig_c = ed25519(controller, sha256("borgpull-controller-sig" || th))
 * sig_a = ed25519(agent, sha256("borgpull-agent-sig" || th || sig_c))
 * keys  = HKDF-SHA256(ikm = X25519(eph_a, eph_c), salt = th,
 *                     info = "borgpull a2c" | "borgpull c2a", 32 bytes each)
 * enroll.proof = ed25519(tokenKey, sha256("borgpull-enroll" || agentKey || eph_a || nonce_a))
 *         tokenKey: the key pair derived from the token's secret (token.ts); the
 *         controller holds only its public half, which cannot make a proof.
 */
import { createHash, createPrivateKey, createPublicKey, diffieHellman, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { decodeHandshake, encodeMessage, packValue } from './codec.js';
import { PeerError, ProtocolError } from './errors.js';
import { bytesEqual, signMessage, verifySignature, type IdentityKeys } from './keys.js';
import { PROTOCOL_VERSION, type HandshakeMessage, type HelloMessage, type WelcomeMessage } from './messages.js';
import { Session } from './session.js';
import { tokenProof } from './token.js';

export type AgentCheck = (agentKey: Uint8Array, enroll: { tokenId: string; proof: Uint8Array; proofInput: Uint8Array } | undefined) => void;

export interface AgentInfo {
  agentKey: Uint8Array;
  software: string;
  enroll?: { tokenId: string };
}

function sha256(...parts: (Uint8Array | string)[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** The input the enrollment proof is computed over. */
export function enrollProofInput(agentKey: Uint8Array, eph: Uint8Array, nonce: Uint8Array): Buffer {
  return sha256('borgpull-enroll', agentKey, eph, nonce);
}

function transcriptHash(helloBytes: Uint8Array, w: Omit<WelcomeMessage, 'sig' | 'type'>): Buffer {
  const unsigned = packValue({ type: 'welcome', v: w.v, controllerKey: w.controllerKey, eph: w.eph, nonce: w.nonce });
  return sha256('borgpull-handshake-v1', helloBytes, unsigned);
}

/**
 * A fresh x25519 key: 32 random bytes imported as a JWK private key, its
 * public half read back from it. Not `generateKeyPairSync`: on Node 20 a GC
 * that collects the KeyGenJob which made a key, while that key is being
 * exported, locks the key's mutex a second time on the same thread, and the
 * process hangs for good (seen in gdb: ExportJWKEdKey -> GC -> ~KeyGenJob ->
 * uv_mutex_lock; a loop of handshakes hung within seconds in 2 runs of 3:
 * handshake-deadlock.test.ts). An import makes no KeyGenJob. JWK, not DER:
 * the DER import costs ~8x more here. Node reads `d` for a private OKP JWK
 * and derives the public key itself; `x` must be a string and is not used.
 */
function ephemeral(): { privateKey: KeyObject; publicRaw: Buffer } {
  const privateKey = createPrivateKey({
    key: { kty: 'OKP', crv: 'X25519', d: randomBytes(32).toString('base64url'), x: '' },
    format: 'jwk',
  });
  const jwk = privateKey.export({ format: 'jwk' });
  return { privateKey, publicRaw: Buffer.from(String(jwk.x), 'base64url') };
}

function deriveKeys(privateKey: KeyObject, peerEph: Uint8Array, th: Buffer): { a2c: Buffer; c2a: Buffer } {
  let shared: Buffer;
  try {
    const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(peerEph).toString('base64url') }, format: 'jwk' });
    shared = diffieHellman({ privateKey, publicKey });
  } catch (err) {
    throw new ProtocolError('E_PROTO_BAD_FIELD', 'field "eph" is not a usable x25519 key', { cause: err });
  }
  if (shared.every((b) => b === 0)) throw new ProtocolError('E_PROTO_BAD_FIELD', 'field "eph" is a low-order point');
  return {
    a2c: Buffer.from(hkdfSync('sha256', shared, th, 'borgpull a2c', 32)),
    c2a: Buffer.from(hkdfSync('sha256', shared, th, 'borgpull c2a', 32)),
  };
}

/** A peer's {type:'error'} handshake frame, surfaced with its code when well-formed. */
function peerRefused(m: { code: string; message: string }): PeerError {
  const code = /^E_[A-Z0-9_]{1,64}$/.test(m.code) ? m.code : 'E_PROTO_UNEXPECTED';
  return new PeerError(code, `peer refused the handshake: ${m.message.slice(0, 512)}`);
}

function expect<T extends HandshakeMessage['type']>(m: HandshakeMessage, type: T): Extract<HandshakeMessage, { type: T }> {
  if (m.type === type) return m as Extract<HandshakeMessage, { type: T }>;
  if (m.type === 'error') throw peerRefused(m);
  throw new ProtocolError('E_PROTO_UNEXPECTED', `expected a "${type}" frame, got "${m.type}"`);
}

function outOfOrder(step: string): ProtocolError {
  return new ProtocolError('E_PROTO_UNEXPECTED', `handshake step "${step}" out of order`);
}

/** Encodes a handshake error frame to send before closing. */
export function encodeHandshakeError(code: string, message: string): Buffer {
  return encodeMessage({ type: 'error', code, message });
}

export class AgentHandshake {
  readonly #opts: {
    identity: IdentityKeys;
    controllerKey: Uint8Array;
    software: string;
    enroll?: { tokenId: string; tokenKey: IdentityKeys };
  };
  readonly #eph = ephemeral();
  #helloBytes: Buffer | undefined;
  #session: Session | undefined;

  constructor(opts: {
    identity: IdentityKeys;
    controllerKey: Uint8Array;
    software: string;
    enroll?: { tokenId: string; tokenKey: IdentityKeys };
  }) {
    this.#opts = opts;
  }

  hello(): Buffer {
    if (this.#helloBytes) throw outOfOrder('hello');
    const { identity, software, enroll } = this.#opts;
    const nonce = randomBytes(32);
    const m: HelloMessage = { type: 'hello', v: PROTOCOL_VERSION, agentKey: identity.publicKey, eph: this.#eph.publicRaw, nonce, software };
    if (enroll) {
      const input = enrollProofInput(identity.publicKey, this.#eph.publicRaw, nonce);
      m.enroll = { tokenId: enroll.tokenId, proof: tokenProof(enroll.tokenKey, input) };
    }
    this.#helloBytes = Buffer.from(encodeMessage(m));
    return this.#helloBytes;
  }

  /** Verifies the controller (pinned key, signature) and returns the auth frame. */
  onWelcome(frame: Uint8Array): Buffer {
    if (!this.#helloBytes || this.#session) throw outOfOrder('welcome');
    const w = expect(decodeHandshake(frame), 'welcome');
    if (w.v !== PROTOCOL_VERSION) {
      throw new ProtocolError('E_PROTO_VERSION', `controller speaks protocol version ${w.v}, this agent speaks ${PROTOCOL_VERSION}`);
    }
    if (!bytesEqual(w.controllerKey, this.#opts.controllerKey)) {
      throw new ProtocolError('E_AUTH_PINNED_KEY', 'controller key does not match the pinned key');
    }
    const th = transcriptHash(this.#helloBytes, w);
    if (!verifySignature(w.controllerKey, sha256('borgpull-controller-sig', th), w.sig)) {
      throw new ProtocolError('E_AUTH_SIGNATURE', 'controller signature is invalid');
    }
    const keys = deriveKeys(this.#eph.privateKey, w.eph, th);
    const sig = signMessage(this.#opts.identity, sha256('borgpull-agent-sig', th, w.sig));
    this.#session = new Session(keys.a2c, keys.c2a);
    return encodeMessage({ type: 'auth', sig });
  }

  session(): Session {
    if (!this.#session) throw outOfOrder('session');
    return this.#session;
  }
}

export class ControllerHandshake {
  readonly #opts: { identity: IdentityKeys; checkAgent: AgentCheck };
  #hello: HelloMessage | undefined;
  #th: Buffer | undefined;
  #sig: Buffer | undefined;
  #keys: { a2c: Buffer; c2a: Buffer } | undefined;
  #session: Session | undefined;

  constructor(opts: { identity: IdentityKeys; checkAgent: AgentCheck }) {
    this.#opts = opts;
  }

  /** Checks the hello and the agent (checkAgent runs before any expensive work); returns the welcome frame. */
  onHello(frame: Uint8Array): Buffer {
    if (this.#hello) throw outOfOrder('hello');
    const h = expect(decodeHandshake(frame), 'hello');
    if (h.v !== PROTOCOL_VERSION) {
      throw new ProtocolError('E_PROTO_VERSION', `agent speaks protocol version ${h.v}, this controller speaks ${PROTOCOL_VERSION}`);
    }
    const enroll = h.enroll
      ? { tokenId: h.enroll.tokenId, proof: h.enroll.proof, proofInput: enrollProofInput(h.agentKey, h.eph, h.nonce) }
      : undefined;
    this.#opts.checkAgent(h.agentKey, enroll);
    this.#hello = h;

    const eph = ephemeral();
    const nonce = randomBytes(32);
    const unsigned = { v: PROTOCOL_VERSION, controllerKey: this.#opts.identity.publicKey, eph: eph.publicRaw, nonce };
    const th = transcriptHash(frame, unsigned);
    const sig = signMessage(this.#opts.identity, sha256('borgpull-controller-sig', th));
    this.#keys = deriveKeys(eph.privateKey, h.eph, th);
    this.#th = th;
    this.#sig = sig;
    return encodeMessage({ type: 'welcome', ...unsigned, sig });
  }

  /** Verifies the agent's signature over the transcript. */
  onAuth(frame: Uint8Array): AgentInfo {
    const h = this.#hello;
    if (!h || !this.#th || !this.#sig || !this.#keys || this.#session) throw outOfOrder('auth');
    const a = expect(decodeHandshake(frame), 'auth');
    if (!verifySignature(h.agentKey, sha256('borgpull-agent-sig', this.#th, this.#sig), a.sig)) {
      throw new ProtocolError('E_AUTH_SIGNATURE', 'agent signature is invalid');
    }
    this.#session = new Session(this.#keys.c2a, this.#keys.a2c);
    const info: AgentInfo = { agentKey: h.agentKey, software: h.software };
    if (h.enroll) info.enroll = { tokenId: h.enroll.tokenId };
    return info;
  }

  session(): Session {
    if (!this.#session) throw outOfOrder('session');
    return this.#session;
  }
}
