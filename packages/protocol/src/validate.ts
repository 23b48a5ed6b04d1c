/**
 * Field readers for decoded (untrusted) msgpack values. Each one checks type
 * and bounds and throws ProtocolError E_PROTO_BAD_FIELD naming the field.
 */
import { ProtocolError } from './errors.js';

/** Bounds on string fields (in UTF-16 code units). */
export const LIMITS = {
  /** names, codes, hosts, users, versions, token ids */
  name: 256,
  /** human-readable messages, reasons, paths */
  message: 4096,
  /** ssh public key lines and known_hosts key text */
  key: 16_384,
  /** tar stderr tail in restore.result */
  stderr: 65_536,
  /** /etc/passwd, /etc/group, /proc/self/mounts texts */
  text: 1024 * 1024,
} as const;

export type Rec = Record<string, unknown>;

const MAX_DEPTH = 16;

/** Throws E_PROTO_BAD_FIELD for `field`. */
export function badField(field: string, what: string): ProtocolError {
  return new ProtocolError('E_PROTO_BAD_FIELD', `field "${field}" ${what}`);
}

function isPlainObject(v: object): boolean {
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function isBytes(v: object): boolean {
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Buffer.prototype || proto === Uint8Array.prototype;
}

/**
 * Walks a decoded value and rejects anything that is not plain msgpack data:
 * only plain objects, arrays, Buffer/Uint8Array, strings, finite-or-not numbers,
 * booleans, null and undefined (msgpackr's ext 0) are allowed. Rejects Map, Set,
 * Date, Error, RegExp, BigInt, other typed arrays, ArrayBuffer, DataView, C1.
 */
export function assertPlainData(v: unknown, path = 'frame', depth = 0): void {
  if (depth > MAX_DEPTH) throw new ProtocolError('E_PROTO_NOT_OBJECT', `${path}: nested too deeply`);
  switch (typeof v) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'undefined':
      return;
    case 'object': {
      if (v === null) return;
      if (isBytes(v)) return;
      if (Array.isArray(v)) {
        if (Object.getPrototypeOf(v) !== Array.prototype) break;
        for (let i = 0; i < v.length; i++) assertPlainData(v[i] as unknown, `${path}[${i}]`, depth + 1);
        return;
      }
      if (!isPlainObject(v)) break;
      for (const key of Object.keys(v)) assertPlainData((v as Rec)[key], `${path}.${key}`, depth + 1);
      return;
    }
    default:
      break;
  }
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- Object.create(null) has no constructor
  const kind = typeof v === 'object' && v !== null ? (v.constructor?.name ?? 'object') : typeof v;
  throw new ProtocolError('E_PROTO_NOT_OBJECT', `${path}: ${kind} is not plain msgpack data`);
}

/** The value must be a plain object (map); returns it as a record. */
export function asRecord(v: unknown, field: string): Rec {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || !isPlainObject(v)) {
    throw new ProtocolError('E_PROTO_NOT_OBJECT', `${field} must be a map`);
  }
  return v as Rec;
}

function own(r: Rec, field: string): unknown {
  return Object.prototype.hasOwnProperty.call(r, field) ? r[field] : undefined;
}

const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

export interface StrOpts {
  max: number;
  /** reject the empty string */
  nonEmpty?: boolean;
  /** single line: no control characters (for values written to key/known_hosts files, paths, names) */
  line?: boolean;
}

export function str(r: Rec, field: string, o: StrOpts): string {
  const v = own(r, field);
  if (typeof v !== 'string') throw badField(field, 'must be a string');
  return checkStr(v, field, o);
}

export function optStr(r: Rec, field: string, o: StrOpts): string | undefined {
  const v = own(r, field);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw badField(field, 'must be a string');
  return checkStr(v, field, o);
}

function checkStr(v: string, field: string, o: StrOpts): string {
  if (v.length > o.max) throw badField(field, `is longer than ${o.max} characters`);
  if (o.nonEmpty && v.length === 0) throw badField(field, 'must not be empty');
  if (o.line && CONTROL_CHARS.test(v)) throw badField(field, 'must not contain control characters');
  return v;
}

/** Optional list of at most `maxItems` strings, each checked like `str`; returned as a copy. */
export function optStrList(r: Rec, field: string, maxItems: number, o: StrOpts): string[] | undefined {
  const v = own(r, field);
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw badField(field, 'must be a list');
  if (v.length > maxItems) throw badField(field, `must have at most ${maxItems} entries`);
  return v.map((x: unknown, i) => {
    if (typeof x !== 'string') throw badField(`${field}[${i}]`, 'must be a string');
    return checkStr(x, `${field}[${i}]`, o);
  });
}

export function int(r: Rec, field: string, min: number, max: number): number {
  const v = own(r, field);
  if (typeof v !== 'number' || !Number.isInteger(v)) throw badField(field, 'must be an integer');
  if (v < min || v > max) throw badField(field, `must be between ${min} and ${max}`);
  return v;
}

export function optInt(r: Rec, field: string, min: number, max: number): number | undefined {
  const v = own(r, field);
  if (v === undefined || v === null) return undefined;
  return int(r, field, min, max);
}

export const UINT32_MAX = 0xffff_ffff;
export const id = (r: Rec): number => int(r, 'id', 0, UINT32_MAX);
export const optId = (r: Rec): number | undefined => optInt(r, 'id', 0, UINT32_MAX);
export const uint32 = (r: Rec, f: string): number => int(r, f, 0, UINT32_MAX);
export const port = (r: Rec, f: string): number => int(r, f, 1, 0xffff);
export const count = (r: Rec, f: string): number => int(r, f, 0, Number.MAX_SAFE_INTEGER);

export function bool(r: Rec, field: string): boolean {
  const v = own(r, field);
  if (typeof v !== 'boolean') throw badField(field, 'must be a boolean');
  return v;
}

/** Binary field of exactly `len` bytes; returned as a detached copy. */
export function bin(r: Rec, field: string, len: number): Uint8Array {
  const v = own(r, field);
  if (!(v instanceof Uint8Array) || (Object.getPrototypeOf(v) !== Buffer.prototype && Object.getPrototypeOf(v) !== Uint8Array.prototype)) {
    throw badField(field, 'must be binary');
  }
  if (v.length !== len) throw badField(field, `must be ${len} bytes`);
  return Buffer.from(v);
}

function subRecord(v: unknown, field: string): Rec {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || !isPlainObject(v)) throw badField(field, 'must be a map');
  return v as Rec;
}

export function sub(r: Rec, field: string): Rec {
  return subRecord(own(r, field), field);
}

export function optSub(r: Rec, field: string): Rec | undefined {
  const v = own(r, field);
  if (v === undefined || v === null) return undefined;
  return subRecord(v, field);
}

/** Runs `read` on a nested map, prefixing field names in its errors with `parent.`. */
export function nested<T>(parent: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof ProtocolError && err.code === 'E_PROTO_BAD_FIELD') {
      throw new ProtocolError(err.code, err.message.replace('field "', `field "${parent}.`));
    }
    throw err;
  }
}
