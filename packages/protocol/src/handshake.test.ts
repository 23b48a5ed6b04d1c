import { describe, expect, it } from 'vitest';
import { decodeAgentMessage, decodeControllerMessage, decodeHandshake, encodeMessage, packValue } from './codec.js';
import { BorgpullError, PeerError } from './errors.js';
import { AgentHandshake, ControllerHandshake, encodeHandshakeError, type AgentCheck } from './handshake.js';
import { generateIdentity, type IdentityKeys } from './keys.js';
import { checkEnrollment, createToken, parseToken, tokenSigningKey, type TokenRecord } from './token.js';

const controller = generateIdentity();
const agent = generateIdentity();

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const allowAll: AgentCheck = () => {};

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BorgpullError);
    return (err as BorgpullError).code;
  }
  return 'NO_ERROR';
}

function pair(opts: { agentId?: IdentityKeys; pinned?: Uint8Array; checkAgent?: AgentCheck } = {}): {
  a: AgentHandshake;
  c: ControllerHandshake;
} {
  return {
    a: new AgentHandshake({ identity: opts.agentId ?? agent, controllerKey: opts.pinned ?? controller.publicKey, software: '0.1.0' }),
    c: new ControllerHandshake({ identity: controller, checkAgent: opts.checkAgent ?? allowAll }),
  };
}

/** Decodes a handshake frame, applies `edit` to its plain fields, re-encodes. */
function tamper(frame: Buffer, edit: (m: Record<string, unknown>) => void): Buffer {
  const m = { ...(decodeHandshake(frame) as unknown as Record<string, unknown>) };
  edit(m);
  return packValue(m);
}
const flip = (b: unknown): Buffer => {
  const c = Buffer.from(b as Uint8Array);
  c[0] = (c[0] ?? 0) ^ 0x01;
  return c;
};

describe('handshake', () => {
  it('happy path: both sides get matching sessions', () => {
    const { a, c } = pair();
    const auth = a.onWelcome(c.onHello(a.hello()));
    const info = c.onAuth(auth);
    expect(hex(info.agentKey)).toBe(hex(agent.publicKey));
    expect(info.software).toBe('0.1.0');
    expect(info.enroll).toBeUndefined();

    const as = a.session();
    const cs = c.session();
    for (let i = 0; i < 3; i++) {
      const down = cs.open(as.sealMessage({ type: 'ok', id: i }));
      expect(down.kind === 'message' && decodeAgentMessage(down.bytes)).toEqual({ type: 'ok', id: i });
      const up = as.open(cs.sealMessage({ type: 'host.report.get', id: i }));
      expect(up.kind === 'message' && decodeControllerMessage(up.bytes)).toEqual({ type: 'host.report.get', id: i });
    }
  });

  it('two handshakes derive different session keys', () => {
    const p1 = pair();
    p1.c.onAuth(p1.a.onWelcome(p1.c.onHello(p1.a.hello())));
    const p2 = pair();
    p2.c.onAuth(p2.a.onWelcome(p2.c.onHello(p2.a.hello())));
    const frame = p1.a.session().sealMessage({ type: 'ok', id: 1 });
    expect(codeOf(() => p2.c.session().open(frame))).toBe('E_AUTH_SEAL');
  });

  it('agent refuses a controller that is not the pinned key', () => {
    const { a, c } = pair({ pinned: generateIdentity().publicKey });
    expect(codeOf(() => a.onWelcome(c.onHello(a.hello())))).toBe('E_AUTH_PINNED_KEY');
  });

  it('agent refuses an impostor presenting the pinned key without its secret', () => {
    const impostor = generateIdentity();
    const a = new AgentHandshake({ identity: agent, controllerKey: controller.publicKey, software: 'x' });
    const c = new ControllerHandshake({ identity: impostor, checkAgent: allowAll });
    const welcome = tamper(c.onHello(a.hello()), (m) => (m['controllerKey'] = Buffer.from(controller.publicKey)));
    expect(codeOf(() => a.onWelcome(welcome))).toBe('E_AUTH_SIGNATURE');
  });

  it.each(['sig', 'eph', 'nonce'])('agent refuses a welcome with %s flipped', (field) => {
    const { a, c } = pair();
    const welcome = tamper(c.onHello(a.hello()), (m) => (m[field] = flip(m[field])));
    expect(codeOf(() => a.onWelcome(welcome))).toBe('E_AUTH_SIGNATURE');
  });

  it('a tampered hello (ephemeral swapped in transit) is caught by the agent', () => {
    const { a, c } = pair();
    const hello = tamper(a.hello(), (m) => (m['eph'] = flip(m['eph'])));
    expect(codeOf(() => a.onWelcome(c.onHello(hello)))).toBe('E_AUTH_SIGNATURE');
  });

  it('controller refuses a tampered auth', () => {
    const { a, c } = pair();
    const auth = tamper(a.onWelcome(c.onHello(a.hello())), (m) => (m['sig'] = flip(m['sig'])));
    expect(codeOf(() => c.onAuth(auth))).toBe('E_AUTH_SIGNATURE');
  });

  it('controller refuses an auth signed by a different key than the hello claimed', () => {
    // attacker replays a known agent's hello, then cannot sign
    const { a, c } = pair();
    const hello = a.hello();
    const mallory = new AgentHandshake({ identity: generateIdentity(), controllerKey: controller.publicKey, software: 'x' });
    mallory.hello();
    const welcome = c.onHello(hello);
    // mallory cannot complete with the victim's transcript; its own auth is for a different transcript/key
    const forged = encodeMessage({ type: 'auth', sig: Buffer.alloc(64, 1) });
    expect(codeOf(() => c.onAuth(forged))).toBe('E_AUTH_SIGNATURE');
    expect(codeOf(() => mallory.onWelcome(welcome))).toBe('E_AUTH_SIGNATURE');
  });

  it('unknown and revoked agents are refused by checkAgent, and the refusal reaches the agent', () => {
    const known = new Set<string>();
    const revoked = new Set<string>([hex(agent.publicKey)]);
    const checkAgent: AgentCheck = (key) => {
      if (revoked.has(hex(key))) throw new PeerError('E_AUTH_REVOKED', 'agent revoked');
      if (!known.has(hex(key))) throw new PeerError('E_AUTH_UNKNOWN_KEY', 'unknown agent: enroll it first');
    };
    const { a, c } = pair({ checkAgent });
    const hello = a.hello();
    let refusal: Buffer | undefined;
    try {
      c.onHello(hello);
    } catch (err) {
      const e = err as BorgpullError;
      expect(e.code).toBe('E_AUTH_REVOKED');
      refusal = encodeHandshakeError(e.code, e.message);
    }
    expect(refusal).toBeDefined();
    expect(codeOf(() => a.onWelcome(refusal as Buffer))).toBe('E_AUTH_REVOKED');

    const other = pair({ agentId: generateIdentity(), checkAgent });
    expect(codeOf(() => other.c.onHello(other.a.hello()))).toBe('E_AUTH_UNKNOWN_KEY');
  });

  it('a non-hello first frame is unexpected; out-of-order steps are refused', () => {
    const { a, c } = pair();
    expect(codeOf(() => c.onHello(encodeMessage({ type: 'auth', sig: Buffer.alloc(64) })))).toBe('E_PROTO_UNEXPECTED');
    expect(codeOf(() => c.onAuth(encodeMessage({ type: 'auth', sig: Buffer.alloc(64) })))).toBe('E_PROTO_UNEXPECTED');
    expect(codeOf(() => a.onWelcome(Buffer.from([0x80])))).toBe('E_PROTO_UNEXPECTED');
    expect(codeOf(() => a.session())).toBe('E_PROTO_UNEXPECTED');
    const hello = a.hello();
    expect(codeOf(() => a.hello())).toBe('E_PROTO_UNEXPECTED');
    expect(codeOf(() => a.onWelcome(hello))).toBe('E_PROTO_UNEXPECTED');
    expect(codeOf(() => c.onHello(Buffer.from('garbage')))).toBe('E_PROTO_DECODE');
  });

  it('a hello with another protocol version is refused', () => {
    const { a, c } = pair();
    const hello = tamper(a.hello(), (m) => (m['v'] = 2));
    expect(codeOf(() => c.onHello(hello))).toBe('E_PROTO_VERSION');
  });

  it('another protocol version is refused as such, whatever its other fields (that version defines them)', () => {
    const { a, c } = pair();
    // A later version may drop, rename or reshape any field but `type` and `v`.
    const hello = packValue({ type: 'hello', v: 2, agentKey: Buffer.alloc(48, 1), features: ['x'] });
    expect(codeOf(() => c.onHello(hello))).toBe('E_PROTO_VERSION');
    const welcome = packValue({ type: 'welcome', v: 2, controllerKey: 'not bytes' });
    a.hello();
    expect(codeOf(() => a.onWelcome(welcome))).toBe('E_PROTO_VERSION');
    // A version that is not a uint32 is a bad field.
    expect(codeOf(() => c.onHello(packValue({ type: 'hello', v: 'two' })))).toBe('E_PROTO_BAD_FIELD');
  });

  it('rejects a low-order x25519 ephemeral', () => {
    const { a, c } = pair();
    const hello = tamper(a.hello(), (m) => (m['eph'] = Buffer.alloc(32)));
    expect(codeOf(() => c.onHello(hello))).toBe('E_PROTO_BAD_FIELD');
  });
});

describe('enrollment', () => {
  /** A controller-side token store, as the controller package would keep it. */
  function makeController(now: () => number): {
    store: Map<string, TokenRecord>;
    handshake: () => ControllerHandshake;
    consume: (tokenId: string) => void;
  } {
    const store = new Map<string, TokenRecord>();
    const checkAgent: AgentCheck = (_key, enroll) => {
      if (!enroll) throw new PeerError('E_AUTH_UNKNOWN_KEY', 'unknown agent');
      checkEnrollment(store.get(enroll.tokenId), enroll, now());
    };
    return {
      store,
      handshake: () => new ControllerHandshake({ identity: controller, checkAgent }),
      consume: (id) => store.delete(id),
    };
  }

  function enrollingAgent(token: string, identity: IdentityKeys = generateIdentity(), tokenKey?: IdentityKeys): AgentHandshake {
    const t = parseToken(token);
    return new AgentHandshake({
      identity,
      controllerKey: t.controllerKey,
      software: '0.1.0',
      enroll: { tokenId: t.id, tokenKey: tokenKey ?? tokenSigningKey(t.secret) },
    });
  }

  function run(a: AgentHandshake, c: ControllerHandshake): ReturnType<ControllerHandshake['onAuth']> {
    return c.onAuth(a.onWelcome(c.onHello(a.hello())));
  }

  it('a good token enrolls once; reuse is refused', () => {
    let now = 1_000;
    const ctl = makeController(() => now);
    const { token, record } = createToken({ url: 'ws://h', controllerKey: controller.publicKey, name: 'web1', ttlMs: 60_000, now });
    ctl.store.set(record.id, record);

    const info = run(enrollingAgent(token), ctl.handshake());
    expect(info.enroll).toEqual({ tokenId: record.id });
    ctl.consume(record.id); // only after onAuth succeeded

    now += 1;
    const again = enrollingAgent(token);
    const e = (() => {
      try {
        ctl.handshake().onHello(again.hello());
      } catch (err) {
        return err as BorgpullError;
      }
      return undefined;
    })();
    expect(e?.code).toBe('E_AUTH_TOKEN');
    expect(e?.message).toMatch(/already used/);
  });

  it('a forged proof is refused', () => {
    const ctl = makeController(() => 0);
    const { token, record } = createToken({ url: 'ws://h', controllerKey: controller.publicKey, name: 'n', ttlMs: 1000, now: 0 });
    ctl.store.set(record.id, record);
    const forger = enrollingAgent(token, generateIdentity(), generateIdentity());
    expect(() => ctl.handshake().onHello(forger.hello())).toThrow(/forged/);
  });

  it("a proof made with the controller's stored verifier is refused", () => {
    const ctl = makeController(() => 0);
    const { token, record } = createToken({ url: 'ws://h', controllerKey: controller.publicKey, name: 'n', ttlMs: 1000, now: 0 });
    ctl.store.set(record.id, record);
    // Someone who read the registry: the verifier as a token secret, and as a signing key's seed.
    const stolen = Buffer.from(record.verifier, 'base64url');
    for (const key of [tokenSigningKey(stolen), { publicKey: stolen, secretKey: Buffer.concat([stolen, stolen]) }]) {
      expect(() => ctl.handshake().onHello(enrollingAgent(token, generateIdentity(), key).hello())).toThrow(/forged/);
    }
  });

  it('a proof bound to one agent key cannot be reused with another', () => {
    const ctl = makeController(() => 0);
    const { token, record } = createToken({ url: 'ws://h', controllerKey: controller.publicKey, name: 'n', ttlMs: 1000, now: 0 });
    ctl.store.set(record.id, record);
    const hello = enrollingAgent(token).hello();
    const stolen = tamper(hello, (m) => (m['agentKey'] = Buffer.from(generateIdentity().publicKey)));
    expect(() => ctl.handshake().onHello(stolen)).toThrow(/forged/);
  });

  it('an expired token is refused', () => {
    let now = 0;
    const ctl = makeController(() => now);
    const { token, record } = createToken({ url: 'ws://h', controllerKey: controller.publicKey, name: 'n', ttlMs: 1000, now });
    ctl.store.set(record.id, record);
    now = 1000;
    expect(() => ctl.handshake().onHello(enrollingAgent(token).hello())).toThrow(/expired/);
  });

  it('the token pins the controller key', () => {
    const ctl = makeController(() => 0);
    const { token, record } = createToken({ url: 'ws://h', controllerKey: generateIdentity().publicKey, name: 'n', ttlMs: 1000, now: 0 });
    ctl.store.set(record.id, record);
    const a = enrollingAgent(token);
    expect(codeOf(() => a.onWelcome(ctl.handshake().onHello(a.hello())))).toBe('E_AUTH_PINNED_KEY');
  });
});
