/**
 * The monitoring sections of config.json: `status` (when an agent's last good
 * backup is too old), `alerts` (hooks run on failure, success, overdue and
 * recovery) and `metrics` (the Prometheus endpoint). Validated like the rest
 * of the file: known fields only, bounded, one-line errors naming the field.
 */
import { isIP } from 'node:net';
import { ControllerError } from '../errors.js';
import { formatDuration, parseDuration } from '../units.js';

export const ALERT_EVENTS = ['failure', 'success', 'overdue', 'recovery'] as const;
export type AlertEvent = (typeof ALERT_EVENTS)[number];

export interface StatusSettings {
  /** A last good backup older than this (seconds) is a warning; unset: see thresholds(). */
  readonly warnAfter?: number;
  /** Older than this (seconds) the agent is overdue: critical, and an `overdue` alert. */
  readonly overdueAfter?: number;
}

/** Runs a program (no shell): argv[0] is an absolute path. */
export interface CommandHook {
  readonly command: readonly string[];
  readonly timeout?: number;
}

/** POSTs the event: `json` (the event object, for healthchecks-style endpoints and webhooks) or `ntfy` (plain text, Title/Priority/Tags headers). */
export interface UrlHook {
  readonly url: string;
  readonly format: 'json' | 'ntfy';
  readonly timeout?: number;
}

export type AlertHook = CommandHook | UrlHook;

export interface AlertSettings {
  /** Default per-hook time limit (seconds): a hook still running then is killed (its whole process group). */
  readonly timeout: number;
  readonly hooks: Readonly<Record<AlertEvent, readonly AlertHook[]>>;
}

export interface MetricsSettings {
  readonly host: string;
  readonly port: number;
  /** A non-loopback `host` is refused unless this is true. */
  readonly allowRemote: boolean;
}

export const DEFAULT_ALERT_TIMEOUT = 30;
export const MAX_ALERT_TIMEOUT = 3600;
export const MAX_HOOKS_PER_EVENT = 16;
const MAX_ARGS = 64;
const MAX_AGE = 365 * 86_400;

function bad(field: string, what: string): never {
  throw new ControllerError('E_CONFIG_INVALID', `config: ${field} ${what}`);
}

function obj(v: unknown, field: string, known: readonly string[]): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(field, 'must be an object');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!known.includes(k)) bad(`${field}.${k.slice(0, 64)}`, 'is not a known setting');
  return o;
}

function dur(v: unknown, field: string, min: number, max: number): number {
  const r = parseDuration(v, min, max);
  return typeof r === 'number' ? r : bad(field, r);
}

export function parseStatus(v: unknown): StatusSettings {
  if (v === undefined) return Object.freeze({});
  const o = obj(v, 'status', ['warnAfter', 'overdueAfter']);
  const warnAfter = o['warnAfter'] === undefined ? undefined : dur(o['warnAfter'], 'status.warnAfter', 1, MAX_AGE);
  const overdueAfter = o['overdueAfter'] === undefined ? undefined : dur(o['overdueAfter'], 'status.overdueAfter', 1, MAX_AGE);
  if (warnAfter !== undefined && overdueAfter !== undefined && warnAfter > overdueAfter)
    bad('status.warnAfter', 'must not be longer than status.overdueAfter');
  return Object.freeze({ ...(warnAfter === undefined ? {} : { warnAfter }), ...(overdueAfter === undefined ? {} : { overdueAfter }) });
}

function hook(v: unknown, field: string): AlertHook {
  const o = obj(v, field, ['command', 'url', 'format', 'timeout']);
  const timeout = o['timeout'] === undefined ? undefined : dur(o['timeout'], `${field}.timeout`, 1, MAX_ALERT_TIMEOUT);
  const t = timeout === undefined ? {} : { timeout };
  if ((o['command'] === undefined) === (o['url'] === undefined)) bad(field, 'must have either "command" or "url"');
  if (o['command'] !== undefined) {
    if (o['format'] !== undefined) bad(`${field}.format`, 'applies to a "url" hook only');
    const c = o['command'];
    if (!Array.isArray(c) || c.length === 0 || c.length > MAX_ARGS)
      bad(`${field}.command`, `must be a list of 1..${MAX_ARGS} strings (the program, then its arguments; no shell)`);
    const argv = c.map((a, i) => {
      // A NUL cannot be passed to exec: refused here rather than at the first alert.
      if (typeof a !== 'string' || a.length > 4096 || a.includes('\0')) bad(`${field}.command[${i}]`, 'must be a string without NUL');
      return a;
    });
    if (!argv[0]!.startsWith('/')) bad(`${field}.command[0]`, 'must be an absolute path (hooks run with a fixed PATH and no shell)');
    return Object.freeze({ command: Object.freeze(argv), ...t });
  }
  const url = o['url'];
  if (typeof url !== 'string' || url.length > 2048) bad(`${field}.url`, 'must be a string');
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    bad(`${field}.url`, 'is not a URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') bad(`${field}.url`, 'must start with http:// or https://');
  const format = o['format'] ?? 'json';
  if (format !== 'json' && format !== 'ntfy') bad(`${field}.format`, "must be 'json' or 'ntfy'");
  return Object.freeze({ url, format, ...t });
}

export function parseAlerts(v: unknown): AlertSettings {
  const o = v === undefined ? {} : obj(v, 'alerts', ['timeout', ...ALERT_EVENTS]);
  const hooks = {} as Record<AlertEvent, readonly AlertHook[]>;
  for (const ev of ALERT_EVENTS) {
    const list = o[ev] ?? [];
    if (!Array.isArray(list) || list.length > MAX_HOOKS_PER_EVENT)
      bad(`alerts.${ev}`, `must be a list of at most ${MAX_HOOKS_PER_EVENT} hooks`);
    hooks[ev] = Object.freeze(list.map((h, i) => hook(h, `alerts.${ev}[${i}]`)));
  }
  const timeout = o['timeout'] === undefined ? DEFAULT_ALERT_TIMEOUT : dur(o['timeout'], 'alerts.timeout', 1, MAX_ALERT_TIMEOUT);
  return Object.freeze({ timeout, hooks: Object.freeze(hooks) });
}

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/** `metrics.listen`: "PORT" or "HOST:PORT" ("[::1]:PORT" for IPv6); host 127.0.0.1 by default. */
export function parseMetrics(v: unknown): MetricsSettings | undefined {
  if (v === undefined) return undefined;
  const o = obj(v, 'metrics', ['listen', 'allowRemote']);
  const listen = o['listen'];
  if (typeof listen !== 'string' && typeof listen !== 'number') bad('metrics.listen', 'must be "PORT" or "HOST:PORT"');
  const m = /^(?:(?:\[([0-9a-fA-F:.]{2,45})\]|([A-Za-z0-9.-]{1,253})):)?(\d{1,5})$/.exec(String(listen));
  const port = Number(m?.[3]);
  if (!m || port < 1 || port > 65535) bad('metrics.listen', 'must be "PORT" or "HOST:PORT" with a port in 1..65535');
  const host = m[1] ?? m[2] ?? '127.0.0.1';
  const allowRemote = o['allowRemote'] ?? false;
  if (typeof allowRemote !== 'boolean') bad('metrics.allowRemote', 'must be true or false');
  if (!isLoopback(host) && !allowRemote)
    bad(
      'metrics.listen',
      `'${host}' is not a loopback address: the metrics name every agent; set metrics.allowRemote to true to serve them there`,
    );
  return Object.freeze({ host, port, allowRemote });
}

/** The file forms (durations as a person writes them); undefined where the section says nothing beyond the defaults. */
export function monitorJson(status: StatusSettings, alerts: AlertSettings, metrics: MetricsSettings | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (status.warnAfter !== undefined || status.overdueAfter !== undefined) {
    out['status'] = {
      ...(status.warnAfter === undefined ? {} : { warnAfter: formatDuration(status.warnAfter) }),
      ...(status.overdueAfter === undefined ? {} : { overdueAfter: formatDuration(status.overdueAfter) }),
    };
  }
  const anyHook = ALERT_EVENTS.some((e) => alerts.hooks[e].length > 0);
  if (anyHook || alerts.timeout !== DEFAULT_ALERT_TIMEOUT) {
    const a: Record<string, unknown> = { timeout: formatDuration(alerts.timeout) };
    for (const e of ALERT_EVENTS) {
      if (alerts.hooks[e].length)
        a[e] = alerts.hooks[e].map((h) => (h.timeout === undefined ? h : { ...h, timeout: formatDuration(h.timeout) }));
    }
    out['alerts'] = a;
  }
  if (metrics) {
    const host = metrics.host.includes(':') ? `[${metrics.host}]` : metrics.host;
    out['metrics'] = { listen: `${host}:${metrics.port}`, ...(metrics.allowRemote ? { allowRemote: true } : {}) };
  }
  return out;
}
