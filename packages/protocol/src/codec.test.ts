import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { MAX_MESSAGE_BYTES, decodeAgentMessage, decodeControllerMessage, decodeHandshake, encodeMessage, packValue } from './codec.js';
import { ProtocolError } from './errors.js';
import type { AgentMessage, ControllerMessage, HandshakeMessage } from './messages.js';

/** A packer that emits msgpackr's extension types (Set, Date, Error, RegExp, typed arrays, records). */
const hostilePackr = {
  // a fresh Packr each time: a shared one may refer to record structures defined by an earlier pack
  pack: (v: unknown): Buffer => new Packr({ moreTypes: true, useRecords: true }).pack(v),
};

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    return (err as ProtocolError).code;
  }
  return 'NO_ERROR';
}

const b32 = Buffer.alloc(32, 7);
const b64 = Buffer.alloc(64, 9);
const tunnel = { sshHost: 'backup.example', sshPort: 22, user: 'bptunnel', port: 40001, hostKey: 'ssh-ed25519 AAAAC3Nz' };

const controllerMessages: ControllerMessage[] = [
  { type: 'tunnel.open', id: 1, ...tunnel },
  { type: 'tunnel.close', id: 2 },
  { type: 'host.report.get', id: 3 },
  { type: 'restore.begin', id: 4, stream: 2, target: '/', owners: 'names' },
  { type: 'restore.begin', id: 5, stream: 3, target: '/srv', owners: 'numeric' },
  { type: 'restore.begin', id: 6, stream: 1, target: '/srv/restore' },
  { type: 'restore.begin', id: 6, stream: 1, target: '/srv/restore', totalBytes: 12345 },
  { type: 'restore.end', id: 7, stream: 1, bytes: 2 ** 40, sha256: b32 },
  { type: 'restore.abort', stream: 1, reason: 'borg failed' },
  { type: 'enrolled', id: 8, name: 'web1', tunnel, sftpKey: 'ssh-ed25519 AAAA ctl' },
  { type: 'ok', id: 0xffff_ffff },
  { type: 'error', id: 9, code: 'E_JOB_BUSY', message: 'busy' },
  { type: 'error', code: 'E_PROTO_DECODE', message: '' },
  { type: 'credit', stream: 1, bytes: 4 * 1024 * 1024 },
  {
    type: 'restore.begin',
    id: 10,
    stream: 4,
    target: '/srv/restore',
    archive: 'pc1-2026-11-29T10:00:00',
    paths: ['home/alice', 'etc/hostname'],
  },
  // A file name may hold a newline: the decoder bounds it, the agent escapes it before storing it.
  { type: 'restore.begin', id: 11, stream: 5, target: '/srv/restore', archive: 'a\tb', paths: ['home/x\ny'] },
  { type: 'tunnel.open', id: 12, ...tunnel, sftpSecret: b32 },
  // Controllers that serve SFTP through the agent's own socket send no sftpKey.
  { type: 'enrolled', id: 13, name: 'web1', tunnel },
];

const agentMessages: AgentMessage[] = [
  { type: 'enroll', id: 1, sshKey: 'ssh-ed25519 AAAA agent' },
  { type: 'tunnel.opened', id: 2 },
  { type: 'tunnel.closed', port: 40001, reason: 'ssh exited 255' },
  {
    type: 'host.report',
    id: 3,
    hostname: 'web1',
    passwd: 'root:x:0:0::/root:/bin/sh\n',
    group: 'root:x:0:\n',
    mounts: '/dev/sda1 / ext4 rw 0 0\n',
    sshHostKey: 'ssh-ed25519 AAAAhost',
  },
  { type: 'restore.result', id: 4, stream: 1, ok: true, bytes: 10, files: 2, sha256: b32, tarExit: 0, stderr: '' },
  { type: 'restore.result', id: 4, stream: 1, ok: false, bytes: 0, files: 0, sha256: b32, tarExit: null, stderr: 'killed' },
  { type: 'ok', id: 5 },
  { type: 'error', id: 6, code: 'E_RESTORE_TARGET', message: 'no such dir' },
  { type: 'credit', stream: 2, bytes: 0 },
  { type: 'tunnel.opened', id: 7, sftp: true },
  // Agents that serve SFTP themselves report no sshd host key.
  { type: 'host.report', id: 8, hostname: 'web1', passwd: '', group: '', mounts: '' },
];

const handshakeMessages: HandshakeMessage[] = [
  { type: 'hello', v: 1, agentKey: b32, eph: b32, nonce: b32, software: '0.1.0' },
  { type: 'hello', v: 1, agentKey: b32, eph: b32, nonce: b32, software: '0.1.0', enroll: { tokenId: '0123456789abcdef', proof: b64 } },
  { type: 'welcome', v: 1, controllerKey: b32, eph: b32, nonce: b32, sig: b64 },
  { type: 'auth', sig: b64 },
  { type: 'error', code: 'E_AUTH_UNKNOWN_KEY', message: 'enroll first' },
];

describe('round trips', () => {
  it.each(controllerMessages.map((m) => [m.type, m] as const))('controller %s', (_t, m) => {
    expect(decodeControllerMessage(encodeMessage(m))).toEqual(m);
  });
  it.each(agentMessages.map((m) => [m.type, m] as const))('agent %s', (_t, m) => {
    expect(decodeAgentMessage(encodeMessage(m))).toEqual(m);
  });
  it.each(handshakeMessages.map((m) => [m.type, m] as const))('handshake %s', (_t, m) => {
    expect(decodeHandshake(encodeMessage(m))).toEqual(m);
  });
  it('accepts plain Uint8Array binaries and ignores unknown extra fields', () => {
    const m = decodeAgentMessage(packValue({ type: 'ok', id: 1, futureField: { x: [1, 2] } }));
    expect(m).toEqual({ type: 'ok', id: 1 });
    expect(Object.keys(m)).toEqual(['type', 'id']);
    const h = decodeHandshake(encodeMessage({ type: 'auth', sig: new Uint8Array(64) }));
    expect(h).toEqual({ type: 'auth', sig: Buffer.alloc(64) });
  });
  it('omits undefined optional fields on the wire', () => {
    const bytes = encodeMessage({ type: 'error', id: undefined, code: 'E_X', message: 'm' });
    expect(decodeAgentMessage(bytes)).toEqual({ type: 'error', code: 'E_X', message: 'm' });
  });
});

const ok = (extra: Record<string, unknown>): Buffer => packValue({ type: 'ok', id: 1, ...extra });
const hostile = (v: unknown): Buffer => hostilePackr.pack({ type: 'ok', id: 1, extra: v });

const hostileAgentFrames: [string, Uint8Array, string][] = [
  ['empty', Buffer.alloc(0), 'E_PROTO_DECODE'],
  ['garbage text', Buffer.from('hello world'), 'E_PROTO_DECODE'],
  ['garbage 0xc1 (never used)', Buffer.from([0xc1]), 'E_PROTO_NOT_OBJECT'],
  ['truncated map', packValue({ type: 'ok', id: 1 }).subarray(0, 6), 'E_PROTO_DECODE'],
  ['truncated str', Buffer.from([0x81, 0xa4, 0x74, 0x79]), 'E_PROTO_DECODE'],
  ['trailing bytes', Buffer.concat([packValue({ type: 'ok', id: 1 }), Buffer.from([0x00])]), 'E_PROTO_DECODE'],
  ['two messages', Buffer.concat([packValue({ type: 'ok', id: 1 }), packValue({ type: 'ok', id: 2 })]), 'E_PROTO_DECODE'],
  ['unknown ext type', Buffer.from([0x81, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xd4, 0x05, 0x00]), 'E_PROTO_DECODE'],
  ['oversized', Buffer.alloc(MAX_MESSAGE_BYTES + 1), 'E_PROTO_FRAME_TOO_LARGE'],
  ['top-level number', packValue(42), 'E_PROTO_NOT_OBJECT'],
  ['top-level string', packValue('ok'), 'E_PROTO_NOT_OBJECT'],
  ['top-level nil', packValue(null), 'E_PROTO_NOT_OBJECT'],
  ['top-level array', packValue([{ type: 'ok', id: 1 }]), 'E_PROTO_NOT_OBJECT'],
  ['top-level bin', packValue(Buffer.alloc(4)), 'E_PROTO_NOT_OBJECT'],
  ['top-level Set', hostilePackr.pack(new Set([1])), 'E_PROTO_NOT_OBJECT'],
  ['top-level Error', hostilePackr.pack(new Error('x')), 'E_PROTO_NOT_OBJECT'],
  ['Set field', hostile(new Set(['a'])), 'E_PROTO_NOT_OBJECT'],
  ['Date field (timestamp ext -1)', hostile(new Date(0)), 'E_PROTO_NOT_OBJECT'],
  [
    'raw timestamp32 ext',
    Buffer.from([0x82, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xa2, 0x6f, 0x6b, 0xa2, 0x69, 0x64, 0xd6, 0xff, 0, 0, 0, 1]),
    'E_PROTO_NOT_OBJECT',
  ],
  ['Error field', hostile(new Error('boom')), 'E_PROTO_NOT_OBJECT'],
  ['RegExp field', hostile(/a+/g), 'E_PROTO_NOT_OBJECT'],
  ['Float64Array field', hostile(new Float64Array(2)), 'E_PROTO_NOT_OBJECT'],
  ['Uint16Array field', hostile(new Uint16Array(2)), 'E_PROTO_NOT_OBJECT'],
  ['ArrayBuffer field', hostile(new ArrayBuffer(8)), 'E_PROTO_NOT_OBJECT'],
  [
    'BigInt ext field',
    Buffer.from([0x82, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xa2, 0x6f, 0x6b, 0xa2, 0x69, 0x64, 0xd7, 0x42, 0, 0, 0, 0, 0, 0, 0, 1]),
    'E_PROTO_NOT_OBJECT',
  ],
  ['nested too deep', ok({ x: JSON.parse('['.repeat(40) + ']'.repeat(40)) as unknown }), 'E_PROTO_NOT_OBJECT'],
  ['deep garbage nesting', Buffer.alloc(200_000, 0x91), 'E_PROTO_DECODE'],
  ['missing type', packValue({ id: 1 }), 'E_PROTO_BAD_FIELD'],
  ['type not a string', packValue({ type: 7, id: 1 }), 'E_PROTO_BAD_FIELD'],
  ['unknown type', packValue({ type: 'rm -rf', id: 1 }), 'E_PROTO_UNKNOWN_TYPE'],
  ['controller-only type', packValue({ type: 'tunnel.open', id: 1, ...tunnel }), 'E_PROTO_UNKNOWN_TYPE'],
  ['handshake type', packValue({ type: 'hello', v: 1 }), 'E_PROTO_UNKNOWN_TYPE'],
  ['id missing', packValue({ type: 'ok' }), 'E_PROTO_BAD_FIELD'],
  [
    'id ext 0 (undefined)',
    Buffer.from([0x82, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xa2, 0x6f, 0x6b, 0xa2, 0x69, 0x64, 0xd4, 0x00, 0x00]),
    'E_PROTO_BAD_FIELD',
  ],
  ['id string', ok({ id: '1' }), 'E_PROTO_BAD_FIELD'],
  ['id negative', ok({ id: -1 }), 'E_PROTO_BAD_FIELD'],
  ['id float', ok({ id: 1.5 }), 'E_PROTO_BAD_FIELD'],
  ['id NaN', ok({ id: NaN }), 'E_PROTO_BAD_FIELD'],
  ['id Infinity', ok({ id: Infinity }), 'E_PROTO_BAD_FIELD'],
  ['id 2^32', ok({ id: 2 ** 32 }), 'E_PROTO_BAD_FIELD'],
  [
    'id uint64',
    Buffer.from([
      0x82, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xa2, 0x6f, 0x6b, 0xa2, 0x69, 0x64, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ]),
    'E_PROTO_BAD_FIELD',
  ],
  ['enroll sshKey with newline', packValue({ type: 'enroll', id: 1, sshKey: 'ssh-ed25519 AAAA\nssh-rsa EVIL' }), 'E_PROTO_BAD_FIELD'],
  ['enroll sshKey empty', packValue({ type: 'enroll', id: 1, sshKey: '' }), 'E_PROTO_BAD_FIELD'],
  ['enroll sshKey huge', packValue({ type: 'enroll', id: 1, sshKey: 'a'.repeat(20_000) }), 'E_PROTO_BAD_FIELD'],
  ['tunnel.closed port 0', packValue({ type: 'tunnel.closed', port: 0, reason: '' }), 'E_PROTO_BAD_FIELD'],
  ['tunnel.closed port 65536', packValue({ type: 'tunnel.closed', port: 65536, reason: '' }), 'E_PROTO_BAD_FIELD'],
  ['tunnel.closed reason too long', packValue({ type: 'tunnel.closed', port: 1, reason: 'x'.repeat(4097) }), 'E_PROTO_BAD_FIELD'],
  ['host.report hostname too long', packValue({ ...agentMessages[3], hostname: 'h'.repeat(257) }), 'E_PROTO_BAD_FIELD'],
  ['host.report passwd > 1 MiB', packValue({ ...agentMessages[3], passwd: 'p'.repeat(1024 * 1024 + 1) }), 'E_PROTO_BAD_FIELD'],
  [
    'host.report sshHostKey with newline',
    packValue({ ...agentMessages[3], sshHostKey: 'ssh-ed25519 A\n@cert-authority * ssh-rsa B' }),
    'E_PROTO_BAD_FIELD',
  ],
  ['tunnel.opened sftp not a boolean', packValue({ type: 'tunnel.opened', id: 1, sftp: 1 }), 'E_PROTO_BAD_FIELD'],
  ['host.report group not string', packValue({ ...agentMessages[3], group: ['root'] }), 'E_PROTO_BAD_FIELD'],
  ['the old name of host.report', packValue({ ...agentMessages[3], type: 'identity' }), 'E_PROTO_UNKNOWN_TYPE'],
  ['restore.result sha256 31 bytes', packValue({ ...agentMessages[4], sha256: Buffer.alloc(31) }), 'E_PROTO_BAD_FIELD'],
  ['restore.result sha256 as string', packValue({ ...agentMessages[4], sha256: 'ab'.repeat(32) }), 'E_PROTO_BAD_FIELD'],
  ['restore.result sha256 as array', packValue({ ...agentMessages[4], sha256: Array.from(b32) }), 'E_PROTO_BAD_FIELD'],
  ['restore.result ok not bool', packValue({ ...agentMessages[4], ok: 1 }), 'E_PROTO_BAD_FIELD'],
  ['restore.result tarExit string', packValue({ ...agentMessages[4], tarExit: '0' }), 'E_PROTO_BAD_FIELD'],
  ['restore.result tarExit missing', packValue({ ...agentMessages[4], tarExit: undefined }), 'E_PROTO_BAD_FIELD'],
  ['restore.result bytes negative', packValue({ ...agentMessages[4], bytes: -5 }), 'E_PROTO_BAD_FIELD'],
  ['restore.result bytes > 2^53', packValue({ ...agentMessages[4], bytes: 2 ** 60 }), 'E_PROTO_BAD_FIELD'],
  ['restore.result stream negative', packValue({ ...agentMessages[4], stream: -1 }), 'E_PROTO_BAD_FIELD'],
  ['error code missing', packValue({ type: 'error', id: 1, message: 'x' }), 'E_PROTO_BAD_FIELD'],
  ['error code with newline', packValue({ type: 'error', id: 1, code: 'E_X\n', message: 'x' }), 'E_PROTO_BAD_FIELD'],
  ['credit bytes float', packValue({ type: 'credit', stream: 1, bytes: 0.5 }), 'E_PROTO_BAD_FIELD'],
];

describe('decodeAgentMessage rejects hostile frames', () => {
  it.each(hostileAgentFrames)('%s', (_name, bytes, code) => {
    expect(codeOf(() => decodeAgentMessage(bytes))).toBe(code);
  });
});

const hostileControllerFrames: [string, Uint8Array, string][] = [
  ['agent-only type', packValue({ type: 'enroll', id: 1, sshKey: 'k' }), 'E_PROTO_UNKNOWN_TYPE'],
  ['tunnel.open sftpSecret 31 bytes', packValue({ ...controllerMessages[0], sftpSecret: Buffer.alloc(31) }), 'E_PROTO_BAD_FIELD'],
  ['tunnel.open sftpSecret 33 bytes', packValue({ ...controllerMessages[0], sftpSecret: Buffer.alloc(33) }), 'E_PROTO_BAD_FIELD'],
  ['tunnel.open sftpSecret as text', packValue({ ...controllerMessages[0], sftpSecret: 'x'.repeat(32) }), 'E_PROTO_BAD_FIELD'],
  ['tunnel.open sftpSecret nil', packValue({ ...controllerMessages[0], sftpSecret: null }), 'E_PROTO_BAD_FIELD'],
  ['tunnel.open sshPort string', packValue({ ...controllerMessages[0], sshPort: '22' }), 'E_PROTO_BAD_FIELD'],
  ['tunnel.open hostKey missing', packValue({ ...controllerMessages[0], hostKey: undefined }), 'E_PROTO_BAD_FIELD'],
  ['tunnel.open user with NUL', packValue({ ...controllerMessages[0], user: 'a\u0000b' }), 'E_PROTO_BAD_FIELD'],
  ['tunnel.open hostKey with newline', packValue({ ...controllerMessages[0], hostKey: 'ssh-ed25519 A\ncommand="x"' }), 'E_PROTO_BAD_FIELD'],
  ['restore.begin owners unknown', packValue({ ...controllerMessages[5], owners: 'root' }), 'E_PROTO_BAD_FIELD'],
  ['restore.begin stream negative', packValue({ ...controllerMessages[5], stream: -1 }), 'E_PROTO_BAD_FIELD'],
  ['the old name of host.report.get', packValue({ type: 'identity.get', id: 3 }), 'E_PROTO_UNKNOWN_TYPE'],
  ['restore.begin target empty', packValue({ ...controllerMessages[5], target: '' }), 'E_PROTO_BAD_FIELD'],
  ['restore.begin totalBytes negative', packValue({ ...controllerMessages[5], totalBytes: -1 }), 'E_PROTO_BAD_FIELD'],
  ['restore.begin archive not a string', packValue({ ...controllerMessages[5], archive: 42 }), 'E_PROTO_BAD_FIELD'],
  ['restore.begin archive empty', packValue({ ...controllerMessages[5], archive: '' }), 'E_PROTO_BAD_FIELD'],
  ['restore.begin archive huge', packValue({ ...controllerMessages[5], archive: 'a'.repeat(257) }), 'E_PROTO_BAD_FIELD'],
  ['restore.begin archive is binary', packValue({ ...controllerMessages[5], archive: Buffer.from('pc1') }), 'E_PROTO_BAD_FIELD'],
  ['restore.begin paths a string', packValue({ ...controllerMessages[5], paths: 'home/alice' }), 'E_PROTO_BAD_FIELD'],
  ['restore.begin paths a map', packValue({ ...controllerMessages[5], paths: { 0: 'home' } }), 'E_PROTO_BAD_FIELD'],
  ['restore.begin paths entry a number', packValue({ ...controllerMessages[5], paths: ['home', 7] }), 'E_PROTO_BAD_FIELD'],
  ['restore.begin paths entry empty', packValue({ ...controllerMessages[5], paths: [''] }), 'E_PROTO_BAD_FIELD'],
  ['restore.begin paths entry huge', packValue({ ...controllerMessages[5], paths: ['a'.repeat(4097)] }), 'E_PROTO_BAD_FIELD'],
  [
    'restore.begin paths 1025 entries',
    packValue({ ...controllerMessages[5], paths: Array.from({ length: 1025 }, () => 'a') }),
    'E_PROTO_BAD_FIELD',
  ],
  ['restore.begin paths nested list', packValue({ ...controllerMessages[5], paths: [['home']] }), 'E_PROTO_BAD_FIELD'],
  ['restore.begin paths is a Set', hostilePackr.pack({ ...controllerMessages[5], paths: new Set(['home']) }), 'E_PROTO_NOT_OBJECT'],
  ['restore.end sha256 33 bytes', packValue({ ...controllerMessages[7], sha256: Buffer.alloc(33) }), 'E_PROTO_BAD_FIELD'],
  ['enrolled tunnel missing', packValue({ ...controllerMessages[9], tunnel: undefined }), 'E_PROTO_BAD_FIELD'],
  ['enrolled tunnel not a map', packValue({ ...controllerMessages[9], tunnel: 'x' }), 'E_PROTO_BAD_FIELD'],
  ['enrolled tunnel.port bad', packValue({ ...controllerMessages[9], tunnel: { ...tunnel, port: 70000 } }), 'E_PROTO_BAD_FIELD'],
  ['enrolled tunnel is a Set', hostilePackr.pack({ ...controllerMessages[9], tunnel: new Set([1]) }), 'E_PROTO_NOT_OBJECT'],
];

describe('decodeControllerMessage rejects hostile frames', () => {
  it.each(hostileControllerFrames)('%s', (_name, bytes, code) => {
    expect(codeOf(() => decodeControllerMessage(bytes))).toBe(code);
  });
  it('names the bad entry of a list', () => {
    expect(() => decodeControllerMessage(packValue({ ...controllerMessages[5], paths: ['ok', 3] }))).toThrow(/field "paths\[1\]"/);
  });
  it('copies the paths list (a fresh array, not the decoded one)', () => {
    const m = decodeControllerMessage(packValue({ ...controllerMessages[5], paths: ['a', 'b'], extra: 1 }));
    expect(m).toEqual({ ...controllerMessages[5], paths: ['a', 'b'] });
  });
  it('names the nested field', () => {
    expect(() => decodeControllerMessage(packValue({ ...controllerMessages[9], tunnel: { ...tunnel, port: 0 } }))).toThrow(
      /field "tunnel\.port"/,
    );
  });
});

const hello = handshakeMessages[0] as unknown as Record<string, unknown>;
const hostileHandshakeFrames: [string, Uint8Array, string][] = [
  ['session type', packValue({ type: 'ok', id: 1 }), 'E_PROTO_UNKNOWN_TYPE'],
  ['hello agentKey 31 bytes', packValue({ ...hello, agentKey: Buffer.alloc(31) }), 'E_PROTO_BAD_FIELD'],
  ['hello eph missing', packValue({ ...hello, eph: undefined }), 'E_PROTO_BAD_FIELD'],
  ['hello nonce as Uint16Array', hostilePackr.pack({ ...hello, nonce: new Uint16Array(16) }), 'E_PROTO_NOT_OBJECT'],
  ['hello v string', packValue({ ...hello, v: '1' }), 'E_PROTO_BAD_FIELD'],
  ['hello enroll not a map', packValue({ ...hello, enroll: 'token' }), 'E_PROTO_BAD_FIELD'],
  ['hello enroll proof short', packValue({ ...hello, enroll: { tokenId: 'a', proof: Buffer.alloc(16) } }), 'E_PROTO_BAD_FIELD'],
  [
    'hello enroll proof 32 bytes (the old HMAC size)',
    packValue({ ...hello, enroll: { tokenId: 'a', proof: Buffer.alloc(32) } }),
    'E_PROTO_BAD_FIELD',
  ],
  ['hello enroll proof 65 bytes', packValue({ ...hello, enroll: { tokenId: 'a', proof: Buffer.alloc(65) } }), 'E_PROTO_BAD_FIELD'],
  ['welcome sig 63 bytes', packValue({ ...handshakeMessages[2], sig: Buffer.alloc(63) }), 'E_PROTO_BAD_FIELD'],
  [
    'structured-clone refs (same bin twice)',
    new Packr({ structuredClone: true }).pack({ ...hello, eph: b32, nonce: b32 }),
    'E_PROTO_DECODE',
  ],
  ['auth sig missing', packValue({ type: 'auth' }), 'E_PROTO_BAD_FIELD'],
];

describe('decodeHandshake rejects hostile frames', () => {
  it.each(hostileHandshakeFrames)('%s', (_name, bytes, code) => {
    expect(codeOf(() => decodeHandshake(bytes))).toBe(code);
  });
});

describe('prototype pollution', () => {
  it('a __proto__ key neither pollutes nor changes the prototype', () => {
    const evil = JSON.parse('{"type":"ok","id":1,"__proto__":{"polluted":true,"id":99}}') as unknown;
    const m = decodeAgentMessage(packValue(evil));
    expect(m).toEqual({ type: 'ok', id: 1 });
    expect(Object.getPrototypeOf(m)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });
  it('a __proto__ key cannot supply a missing field', () => {
    const evil = JSON.parse('{"type":"ok","__proto__":{"id":1}}') as unknown;
    expect(codeOf(() => decodeAgentMessage(packValue(evil)))).toBe('E_PROTO_BAD_FIELD');
  });
  it('fields named like Object.prototype members are just data', () => {
    const m = decodeAgentMessage(packValue({ type: 'ok', id: 1, hasOwnProperty: 1, constructor: 'x' }));
    expect(m).toEqual({ type: 'ok', id: 1 });
  });
});

describe('records and state', () => {
  it('a record-encoded frame does not change how the next frame decodes', () => {
    const recordBytes = new Packr({ useRecords: true }).pack({ type: 'ok', id: 1 });
    // msgpackr always understands record definitions; the result is still plain data
    expect(decodeAgentMessage(recordBytes)).toEqual({ type: 'ok', id: 1 });
    // 0x40 is a plain positive fixint in a later frame, not a leftover record
    expect(codeOf(() => decodeAgentMessage(Buffer.from([0x40])))).toBe('E_PROTO_NOT_OBJECT');
  });
  it('encodeMessage refuses a message above the limit', () => {
    const huge = 'p'.repeat(MAX_MESSAGE_BYTES);
    expect(
      codeOf(() => encodeMessage({ type: 'host.report', id: 1, hostname: 'h', passwd: huge, group: '', mounts: '', sshHostKey: 'k' })),
    ).toBe('E_PROTO_FRAME_TOO_LARGE');
  });
});
