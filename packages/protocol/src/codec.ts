/**
 * msgpack codec and the per-direction decoders. Decoding is the trust
 * boundary: size-limited, plain data only, every field checked and copied
 * into a fresh object; unknown extra fields are ignored.
 */
import { Packr, Unpackr } from 'msgpackr';
import { ProtocolError } from './errors.js';
import type { AgentMessage, ControllerMessage, ErrorMessage, HandshakeMessage, TunnelSpec } from './messages.js';
import { PROTOCOL_VERSION, SFTP_SECRET_BYTES } from './messages.js';
import {
  LIMITS,
  asRecord,
  assertPlainData,
  bin,
  bool,
  count,
  id,
  int,
  nested,
  optId,
  optInt,
  optStr,
  optStrList,
  optSub,
  port,
  str,
  sub,
  uint32,
  type Rec,
} from './validate.js';

/** Most paths a restore.begin may name (the controller sends no more than this). */
export const MAX_RESTORE_PATHS = 1024;

/** Largest encoded message accepted or produced (checked before decoding). */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

const unpackr = new Unpackr({
  useRecords: false,
  structuredClone: false,
  mapsAsObjects: true,
  moreTypes: false,
  int64AsType: 'number',
  bundleStrings: false,
});
// skipValues (msgpackr >= 1.11, not in its typings): omit undefined-valued optional fields
const packOptions = { useRecords: false, structuredClone: false, moreTypes: false, skipValues: [undefined] };
const packr = new Packr(packOptions);

/** msgpack-encodes any plain value (no size check). Internal building block. */
export function packValue(v: unknown): Buffer {
  return packr.pack(v);
}

/**
 * Decodes exactly one msgpack value from untrusted bytes and checks that it
 * is plain data. Throws E_PROTO_FRAME_TOO_LARGE, E_PROTO_DECODE (garbage,
 * truncated, trailing bytes) or E_PROTO_NOT_OBJECT.
 */
export function unpackUntrusted(bytes: Uint8Array, maxBytes = MAX_MESSAGE_BYTES): unknown {
  if (!(bytes instanceof Uint8Array)) throw new ProtocolError('E_PROTO_DECODE', 'frame is not binary');
  if (bytes.length > maxBytes) {
    throw new ProtocolError('E_PROTO_FRAME_TOO_LARGE', `frame of ${bytes.length} bytes exceeds ${maxBytes}`);
  }
  if (bytes.length === 0) throw new ProtocolError('E_PROTO_DECODE', 'empty frame');
  let value: unknown;
  try {
    // msgpackr throws on truncated input and on trailing bytes after the value
    value = unpackr.unpack(bytes);
  } catch (err) {
    throw new ProtocolError('E_PROTO_DECODE', 'frame is not valid msgpack', { cause: err });
  }
  assertPlainData(value);
  return value;
}

/** Encodes one message; throws E_PROTO_FRAME_TOO_LARGE above MAX_MESSAGE_BYTES. */
export function encodeMessage(m: HandshakeMessage | ControllerMessage | AgentMessage): Buffer {
  const out = packr.pack(m);
  if (out.length > MAX_MESSAGE_BYTES) {
    throw new ProtocolError('E_PROTO_FRAME_TOO_LARGE', `message of ${out.length} bytes exceeds ${MAX_MESSAGE_BYTES}`);
  }
  return out;
}

function topLevel(bytes: Uint8Array): { r: Rec; type: string } {
  const r = asRecord(unpackUntrusted(bytes), 'frame');
  const type = r['type'];
  if (typeof type !== 'string') throw new ProtocolError('E_PROTO_BAD_FIELD', 'field "type" must be a string');
  return { r, type };
}

function unknownType(type: string): ProtocolError {
  return new ProtocolError('E_PROTO_UNKNOWN_TYPE', `unknown message type "${type.slice(0, 64)}"`);
}

const nameStr = { max: LIMITS.name, nonEmpty: true, line: true } as const;
const codeStr = nameStr;
const msgStr = { max: LIMITS.message } as const;
const keyStr = { max: LIMITS.key, nonEmpty: true, line: true } as const;
const pathStr = { max: LIMITS.message, nonEmpty: true, line: true } as const;
const textStr = { max: LIMITS.text } as const;

function errorMessage(r: Rec): ErrorMessage {
  const m: ErrorMessage = { type: 'error', code: str(r, 'code', codeStr), message: str(r, 'message', msgStr) };
  const i = optId(r);
  if (i !== undefined) m.id = i;
  return m;
}

function credit(r: Rec): { type: 'credit'; stream: number; bytes: number } {
  return { type: 'credit', stream: uint32(r, 'stream'), bytes: count(r, 'bytes') };
}

function tunnelSpec(r: Rec): TunnelSpec {
  return {
    sshHost: str(r, 'sshHost', nameStr),
    sshPort: port(r, 'sshPort'),
    user: str(r, 'user', nameStr),
    port: port(r, 'port'),
    hostKey: str(r, 'hostKey', keyStr),
  };
}

/**
 * The handshake's `v`, checked before any other field: every other field is
 * that version's to define, so a peer of another version is refused as such
 * (`E_PROTO_VERSION`), never as a bad field of this one.
 */
function version(r: Rec, peer: string, self: string): number {
  const v = uint32(r, 'v');
  if (v !== PROTOCOL_VERSION)
    throw new ProtocolError('E_PROTO_VERSION', `${peer} speaks protocol version ${v}, this ${self} speaks ${PROTOCOL_VERSION}`);
  return v;
}

/** Decodes a plaintext handshake frame (either direction). */
export function decodeHandshake(bytes: Uint8Array): HandshakeMessage {
  const { r, type } = topLevel(bytes);
  switch (type) {
    case 'hello': {
      const m: HandshakeMessage = {
        type,
        v: version(r, 'agent', 'controller'),
        agentKey: bin(r, 'agentKey', 32),
        eph: bin(r, 'eph', 32),
        nonce: bin(r, 'nonce', 32),
        software: str(r, 'software', { max: LIMITS.name, line: true }),
      };
      const e = optSub(r, 'enroll');
      if (e) {
        m.enroll = nested('enroll', () => ({ tokenId: str(e, 'tokenId', nameStr), proof: bin(e, 'proof', 64) }));
      }
      return m;
    }
    case 'welcome':
      return {
        type,
        v: version(r, 'controller', 'agent'),
        controllerKey: bin(r, 'controllerKey', 32),
        eph: bin(r, 'eph', 32),
        nonce: bin(r, 'nonce', 32),
        sig: bin(r, 'sig', 64),
      };
    case 'auth':
      return { type, sig: bin(r, 'sig', 64) };
    case 'error':
      return { type, code: str(r, 'code', codeStr), message: str(r, 'message', msgStr) };
    default:
      throw unknownType(type);
  }
}

/** Decodes a session message sent by the controller (what the agent receives). */
export function decodeControllerMessage(bytes: Uint8Array): ControllerMessage {
  const { r, type } = topLevel(bytes);
  switch (type) {
    case 'tunnel.open': {
      const m: ControllerMessage = { type, id: id(r), ...tunnelSpec(r) };
      if (r['sftpSecret'] !== undefined) m.sftpSecret = bin(r, 'sftpSecret', SFTP_SECRET_BYTES);
      return m;
    }
    case 'tunnel.close':
    case 'host.report.get':
    case 'ok':
      return { type, id: id(r) };
    case 'restore.begin': {
      const m: ControllerMessage = {
        type,
        id: id(r),
        stream: uint32(r, 'stream'),
        target: str(r, 'target', pathStr),
      };
      const total = optInt(r, 'totalBytes', 0, Number.MAX_SAFE_INTEGER);
      if (total !== undefined) m.totalBytes = total;
      const owners = r['owners'];
      if (owners !== undefined) {
        if (owners !== 'numeric' && owners !== 'names')
          throw new ProtocolError('E_PROTO_BAD_FIELD', "field 'owners' must be 'numeric' or 'names'");
        m.owners = owners;
      }
      // Informational, for the agent's record: any text (a file name may hold a newline), bounded;
      // the agent escapes control characters before storing or showing them.
      const archive = optStr(r, 'archive', { max: LIMITS.name, nonEmpty: true });
      if (archive !== undefined) m.archive = archive;
      const paths = optStrList(r, 'paths', MAX_RESTORE_PATHS, { max: LIMITS.message, nonEmpty: true });
      if (paths !== undefined) m.paths = paths;
      return m;
    }
    case 'restore.end':
      return { type, id: id(r), stream: uint32(r, 'stream'), bytes: count(r, 'bytes'), sha256: bin(r, 'sha256', 32) };
    case 'restore.abort':
      return { type, stream: uint32(r, 'stream'), reason: str(r, 'reason', msgStr) };
    case 'enrolled': {
      const t = sub(r, 'tunnel');
      const m: ControllerMessage = {
        type,
        id: id(r),
        name: str(r, 'name', nameStr),
        tunnel: nested('tunnel', () => tunnelSpec(t)),
      };
      const sftpKey = optStr(r, 'sftpKey', keyStr);
      if (sftpKey !== undefined) m.sftpKey = sftpKey;
      return m;
    }
    case 'error':
      return errorMessage(r);
    case 'credit':
      return credit(r);
    default:
      throw unknownType(type);
  }
}

/** Decodes a session message sent by the agent (what the controller receives). */
export function decodeAgentMessage(bytes: Uint8Array): AgentMessage {
  const { r, type } = topLevel(bytes);
  switch (type) {
    case 'enroll':
      return { type, id: id(r), sshKey: str(r, 'sshKey', keyStr) };
    case 'tunnel.opened': {
      const m: AgentMessage = { type, id: id(r) };
      if (r['sftp'] !== undefined) m.sftp = bool(r, 'sftp');
      return m;
    }
    case 'ok':
      return { type, id: id(r) };
    case 'tunnel.closed':
      return { type, port: port(r, 'port'), reason: str(r, 'reason', msgStr) };
    case 'host.report': {
      const m: AgentMessage = {
        type,
        id: id(r),
        hostname: str(r, 'hostname', nameStr),
        passwd: str(r, 'passwd', textStr),
        group: str(r, 'group', textStr),
        mounts: str(r, 'mounts', textStr),
      };
      const sshHostKey = optStr(r, 'sshHostKey', keyStr);
      if (sshHostKey !== undefined) m.sshHostKey = sshHostKey;
      return m;
    }
    case 'restore.result': {
      const exit = r['tarExit'];
      return {
        type,
        id: id(r),
        stream: uint32(r, 'stream'),
        ok: bool(r, 'ok'),
        bytes: count(r, 'bytes'),
        files: count(r, 'files'),
        sha256: bin(r, 'sha256', 32),
        tarExit: exit === null ? null : int(r, 'tarExit', -0x8000_0000, 0x7fff_ffff),
        stderr: str(r, 'stderr', { max: LIMITS.stderr }),
      };
    }
    case 'error':
      return errorMessage(r);
    case 'credit':
      return credit(r);
    default:
      throw unknownType(type);
  }
}
