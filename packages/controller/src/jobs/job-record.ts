/**
 * Reading a job record back from the history file. The file is ours, but a
 * disk, a crash or a hand edit can change any byte of it, and what it holds
 * is printed on terminals and branched on by the scheduler: so a record is
 * parsed like wire input (known fields checked and bounded, copied into a
 * fresh object) and anything else is refused, never trusted.
 */
import { terminalSafe } from '@borgpull/protocol';
import type { JobKind, JobRecord, JobStats, JobStatus, JobTrigger } from './job-types.js';

const KINDS: ReadonlySet<string> = new Set<JobKind>(['backup', 'restore', 'prune', 'compact', 'check']);
const STATUSES: ReadonlySet<string> = new Set<JobStatus>(['running', 'succeeded', 'warning', 'failed', 'offline']);
const TRIGGERS: ReadonlySet<string> = new Set<JobTrigger>(['manual', 'schedule', 'connect', 'retry', 'follow-up']);

/** A reason is cut to this many characters when it is saved (tar's stderr can be long), and refused above it when read. */
export const MAX_REASON = 4096;
/** Longer than any record we write (a reason and a target at their bounds, with JSON escaping): a longer line is damage. */
export const MAX_LINE = 64 * 1024;
/** Fields a later version may add to a record: kept when they are plain, bounded values, so history survives an upgrade and a downgrade. */
const MAX_EXTRA_FIELDS = 32;

const ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;
const CODE_RE = /^E_[A-Z0-9_]{1,64}$/;
const EXTRA_KEY_RE = /^[a-zA-Z][a-zA-Z0-9]{0,63}$/;
/** Names (agent, archive) never hold a control character: one here is damage. */
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;

const KNOWN = new Set([
  'id',
  'kind',
  'agent',
  'archive',
  'startedAt',
  'endedAt',
  'trigger',
  'status',
  'reason',
  'code',
  'stats',
  'method',
  'target',
]);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
}

/** A name: bounded, no control characters. */
function name(v: unknown, max: number): string | undefined {
  return typeof v === 'string' && v.length <= max && !CONTROL_RE.test(v) ? v : undefined;
}

/** Free text (a reason, a target): bounded, and printed later, so escaped again in case a writer forgot (terminalSafe keeps escaped text as it is). */
function text(v: unknown, max: number): string | undefined {
  return typeof v === 'string' && v.length <= max ? terminalSafe(v) : undefined;
}

/** A time in ms since the epoch: finite, whole, not negative, before year 10000. */
function time(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v < 253_402_300_800_000 ? v : undefined;
}

function count(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= Number.MAX_SAFE_INTEGER ? v : undefined;
}

class Bad extends Error {}

function need<T>(v: T | undefined): T {
  if (v === undefined) throw new Bad();
  return v;
}

function readStats(v: unknown): JobStats {
  if (!isPlainObject(v)) throw new Bad();
  const keys = Object.keys(v);
  if (keys.length > MAX_EXTRA_FIELDS) throw new Bad();
  const out: Record<string, number | string> = {};
  for (const k of keys) {
    if (!EXTRA_KEY_RE.test(k)) throw new Bad();
    const x = v[k];
    if (k === 'sha256') {
      if (typeof x !== 'string' || !/^[0-9a-f]{64}$/.test(x)) throw new Bad();
      out[k] = x;
    } else out[k] = need(count(x));
  }
  return out;
}

/** An extra field a later version wrote, if it is a bounded string, a finite number or a boolean; anything else is left out. */
function readExtra(v: unknown): string | number | boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  return text(v, MAX_REASON);
}

/** The record `raw` holds, copied and checked; undefined when any field is missing, out of bounds or of the wrong type. */
export function readJobRecord(raw: unknown): JobRecord | undefined {
  try {
    if (!isPlainObject(raw)) return undefined;
    const id = raw['id'];
    if (typeof id !== 'string' || !ID_RE.test(id)) return undefined;
    const kind = raw['kind'];
    const status = raw['status'];
    if (typeof kind !== 'string' || !KINDS.has(kind) || typeof status !== 'string' || !STATUSES.has(status)) return undefined;
    const agent = need(name(raw['agent'], 255));
    if (agent.length === 0) return undefined;
    const rec: JobRecord = { id, kind: kind as JobKind, agent, startedAt: need(time(raw['startedAt'])), status: status as JobStatus };
    if (raw['archive'] !== undefined) rec.archive = need(name(raw['archive'], 255));
    if (raw['endedAt'] !== undefined) rec.endedAt = need(time(raw['endedAt']));
    if (raw['trigger'] !== undefined) {
      const t = raw['trigger'];
      if (typeof t !== 'string' || !TRIGGERS.has(t)) return undefined;
      rec.trigger = t as JobTrigger;
    }
    if (raw['reason'] !== undefined) rec.reason = need(text(raw['reason'], MAX_REASON + 1));
    if (raw['code'] !== undefined) {
      const c = raw['code'];
      if (typeof c !== 'string' || !CODE_RE.test(c)) return undefined;
      rec.code = c;
    }
    if (raw['stats'] !== undefined) rec.stats = readStats(raw['stats']);
    if (raw['method'] !== undefined) rec.method = need(name(raw['method'], 32));
    if (raw['target'] !== undefined) rec.target = need(text(raw['target'], MAX_REASON));
    // Fields of a later version: kept when plain and bounded, else left out (the record itself is still good).
    let extras = 0;
    for (const k of Object.keys(raw)) {
      if (KNOWN.has(k) || !EXTRA_KEY_RE.test(k)) continue;
      const v = readExtra(raw[k]);
      if (v === undefined || ++extras > MAX_EXTRA_FIELDS) continue;
      (rec as unknown as Record<string, unknown>)[k] = v;
    }
    return rec;
  } catch (err) {
    if (err instanceof Bad) return undefined;
    throw err;
  }
}
