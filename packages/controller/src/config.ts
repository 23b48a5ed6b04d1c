import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode, errorMessage, writeFileAtomic } from '@borgpull/protocol';
import { ControllerError } from './errors.js';
import { historyConfig, historyRuleJson, type HistoryRule } from './jobs/history-rule.js';
import { formatSchedule, OFF, parseSchedule, type Schedule } from './schedule/schedule.js';
import { formatDuration, formatSizeExact, parseDuration, parseSize } from './units.js';
import { DEFAULT_CHECKS, parseChecks, type CheckSettings } from './jobs/check-settings.js';
import { parseRetention, type Retention } from './jobs/retention.js';
import {
  monitorJson,
  parseAlerts,
  parseMetrics,
  parseStatus,
  type AlertSettings,
  type MetricsSettings,
  type StatusSettings,
} from './monitor/monitor-config.js';

export const DEFAULT_STATE_DIR = '/var/lib/borgpull';

export type Isolation = 'namespace' | 'chroot';

export interface AgentSettings {
  readonly exclude: readonly string[];
  readonly isolation?: Isolation;
  /** Overrides the global timeLimit for this agent (seconds). */
  readonly timeLimit?: number;
  /** Overrides the global quota for this agent (bytes; 0 = none). */
  readonly quota?: number;
  /** Replaces the global retention for this agent (jobs/retention.ts). */
  readonly retention?: Retention;
  /** This agent's checks: the global ones with the keys given here replaced. */
  readonly checks?: CheckSettings;
  /** Overrides the global schedule for this agent. */
  readonly schedule?: Schedule;
}

/**
 * 24 h: a first backup is the long one (every file read over the client's
 * uplink): ~400 GB at 40 Mbit/s, or 2 TB at 25 MB/s, fits; and a stuck job
 * still frees its `parallel` slot before the next daily run. Clients with
 * bigger first backups get a per-agent override.
 */
export const DEFAULT_TIME_LIMIT = 24 * 3600;
export const MIN_TIME_LIMIT = 1;
export const MAX_TIME_LIMIT = 30 * 86_400;
/** borg refuses a storage_quota below 10M (10^6 bytes), and 10 MiB is above that. */
export const MIN_QUOTA = 10 * 2 ** 20;
/**
 * 2 GiB, an absolute size rather than a percentage: what has to fit is borg's
 * own work, not a share of the disk. A transaction's segments are written
 * before anything is freed, the repository index and hints are rewritten at
 * commit (hundreds of MB for a big repository), and `borg compact`, the only
 * way to get space back, rewrites segments of up to 500 MiB. 5% of a 20 TB
 * array would idle 1 TB; 5% of a 20 GB test disk would not hold one commit.
 */
export const DEFAULT_MIN_FREE_SPACE = 2 * 2 ** 30;
/**
 * 30 s: what a backup near its end needs to commit, under systemd's default
 * stop timeout (90 s) with room for the cleanup that follows. 0 cancels at
 * once. At most a day: a stop that waits longer is a hang, not a grace.
 */
export const DEFAULT_STOP_GRACE = 30;
export const MAX_STOP_GRACE = 86_400;
/**
 * What `controller init` writes: a nightly window. People who set up a
 * backup server and walk away expect a daily backup without a cron line;
 * five hours at night, spread per agent, keeps a few hundred clients from
 * starting at once and ends before Debian's cron.daily (06:25). A config
 * without the key (one written before schedules existed) means `off`: an
 * upgrade never starts jobs nobody asked for (those servers already have a
 * timer running `controller backup --all`).
 */
export const INIT_SCHEDULE = '01:00-06:00';
/**
 * What `controller init` writes for retention: two days of every backup, then
 * a week of dailies, a month of weeklies, half a year of monthlies (borgmatic's
 * sample rules, plus keepWithin so a day of retries and manual runs is never
 * thinned). Written out, never a default of an absent key: pruning deletes
 * backups, so a config without `retention` (one from before retention
 * existed) prunes nothing.
 */
export const INIT_RETENTION = Object.freeze({ keepWithin: '2d', daily: 7, weekly: 4, monthly: 6 });
/** What `controller init` writes for checks: a weekly, time-bounded check of each repository. */
export const INIT_CHECKS = Object.freeze({ schedule: 'every 7d' });
/** After an agent connects, a due backup waits this long (seconds) for the connection to settle. */
export const DEFAULT_CONNECT_DELAY = 30;
export const MAX_CONNECT_DELAY = 3_600;

export interface ControllerConfig {
  /** What agents dial, e.g. ws://backup.example.net:7400 */
  readonly url: string;
  /** host:port the daemon listens on. */
  readonly listen: string;
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  /** The sshd that agents open their reverse tunnels to. */
  readonly sshHost: string;
  readonly sshPort: number;
  readonly tunnelUser: string;
  /** Public host key of that sshd, pinned by every agent. */
  readonly sshHostKeyFile: string;
  /** That sshd's config, checked with `sshd -T` before the daemon starts (sshd-check.ts). */
  readonly sshdConfig: string;
  /** First port handed out to agents for their reverse tunnels. */
  readonly tunnelPortBase: number;
  /** How many agents are backed up at once. */
  readonly parallel: number;
  readonly isolation: Isolation;
  /** Excludes for every agent (borg patterns, relative to the client's /). */
  readonly exclude: readonly string[];
  readonly agents: Readonly<Record<string, AgentSettings>>;
  /** A job (backup or restore) is cancelled after this many seconds. */
  readonly timeLimit: number;
  /** Each repository's borg storage_quota in bytes (0 = none), re-applied at every backup. */
  readonly quota: number;
  /** No backup starts while the repositories' file system has less free (bytes). */
  readonly minFreeSpace: number;
  /** On SIGTERM, running jobs may finish for this many seconds before they are cancelled. */
  readonly stopGrace: number;
  /** Keep rules for every agent without its own; absent means "off": nothing is pruned unless asked for. */
  readonly retention: Retention;
  /** Repository checks: schedule and depth (jobs/check-settings.ts); absent: not scheduled. */
  readonly checks: CheckSettings;
  /** How much job history is kept (jobs/history-rule.ts). */
  readonly history: HistoryRule;
  /** When backups run by themselves (agents may override it); `off` without the key. */
  readonly schedule: Schedule;
  /** Seconds a fresh connection settles before a due backup starts (backup on connect). */
  readonly connectDelay: number;
  /** When `controller status` warns and calls an agent overdue (monitor/monitor-config.ts). */
  readonly status: StatusSettings;
  /** Hooks run on failure, success, overdue and recovery. */
  readonly alerts: AlertSettings;
  /** The Prometheus endpoint; off when undefined. */
  readonly metrics?: MetricsSettings;
}

export function configPath(stateDir: string): string {
  return join(stateDir, 'config.json');
}

function bad(field: string, what: string): never {
  throw new ControllerError('E_CONFIG_INVALID', `config: ${field} ${what}`);
}

function str(o: Record<string, unknown>, k: string, dflt?: string): string {
  const v = o[k] ?? dflt;
  if (typeof v !== 'string' || v.length === 0 || v.length > 1024) bad(k, 'must be a non-empty string');
  return v;
}

function optStr(o: Record<string, unknown>, k: string): string | undefined {
  return o[k] === undefined ? undefined : str(o, k);
}

function int(o: Record<string, unknown>, k: string, dflt: number, min: number, max: number): number {
  const v = o[k] ?? dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) bad(k, `must be an integer in ${min}..${max}`);
  return v;
}

function strList(v: unknown, field: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x.length === 0 || x.length > 4096)) {
    bad(field, 'must be a list of non-empty strings');
  }
  return [...(v as string[])];
}

function duration(v: unknown, field: string, min = MIN_TIME_LIMIT, max = MAX_TIME_LIMIT): number {
  const r = parseDuration(v, min, max);
  return typeof r === 'number' ? r : bad(field, r);
}

function size(v: unknown, field: string): number {
  const r = parseSize(v);
  return typeof r === 'number' ? r : bad(field, r);
}

function quota(v: unknown, field: string): number {
  if (v === 'none' || v === 0) return 0;
  const q = size(v, field);
  if (q < MIN_QUOTA) bad(field, `must be 'none' or at least 10M (borg's minimum)`);
  return q;
}

function schedule(v: unknown, field: string): Schedule {
  const r = parseSchedule(v);
  return typeof r === 'string' ? bad(field, r) : r;
}

function isolation(v: unknown, field: string): Isolation {
  if (v === 'namespace' || v === 'chroot') return v;
  return bad(field, "must be 'namespace' or 'chroot'");
}

export function parseUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ControllerError('E_CONFIG_URL', `not a URL: ${url} (expected ws://HOST:PORT or wss://HOST:PORT)`);
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
    throw new ControllerError('E_CONFIG_URL', `URL must start with ws:// or wss://, got ${url}`);
  }
  return u;
}

/**
 * The object's fields as a reader sees them, and a check, once read, that no
 * field was left unread: a misspelt key ("schedul") is an error at load and
 * at reload, never a setting silently not applied. Tracking the reads, not a
 * list of known keys, keeps the two from drifting apart.
 */
function readTracked(obj: object, where: string): { o: Record<string, unknown>; noOthers: () => void } {
  const read = new Set<string | symbol>();
  const o = new Proxy(obj as Record<string, unknown>, {
    get(target, key) {
      read.add(key);
      return Object.prototype.hasOwnProperty.call(target, key) ? (Reflect.get(target, key) as unknown) : undefined;
    },
  });
  return {
    o,
    noOthers: () => {
      const unknown = Object.keys(obj).filter((k) => !read.has(k));
      if (unknown.length)
        bad(
          where === '' ? `key "${unknown[0]!.slice(0, 64)}"` : `${where}.${unknown[0]!.slice(0, 64)}`,
          'is not a known setting (misspelt?)',
        );
    },
  };
}

/** Validates a decoded config.json like a wire message: known fields only, bounded, then frozen. */
export function validateConfig(raw: unknown): ControllerConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad('file', 'must hold a JSON object');
  const top = readTracked(raw, '');
  const o = top.o;
  const url = str(o, 'url');
  const u = parseUrl(url);
  const agentsRaw = o['agents'] ?? {};
  if (typeof agentsRaw !== 'object' || Array.isArray(agentsRaw)) bad('agents', 'must be an object');
  const agents: Record<string, AgentSettings> = {};
  const checks = o['checks'] === undefined ? DEFAULT_CHECKS : parseChecks(o['checks'], 'checks', DEFAULT_CHECKS);
  for (const [name, v] of Object.entries(agentsRaw as Record<string, unknown>)) {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(`agents.${name}`, 'must be an object');
    const tracked = readTracked(v, `agents.${name}`);
    const a = tracked.o;
    agents[name] = Object.freeze({
      exclude: Object.freeze(strList(a['exclude'], `agents.${name}.exclude`)),
      ...(a['isolation'] === undefined ? {} : { isolation: isolation(a['isolation'], `agents.${name}.isolation`) }),
      ...(a['timeLimit'] === undefined ? {} : { timeLimit: duration(a['timeLimit'], `agents.${name}.timeLimit`) }),
      ...(a['quota'] === undefined ? {} : { quota: quota(a['quota'], `agents.${name}.quota`) }),
      ...(a['retention'] === undefined ? {} : { retention: parseRetention(a['retention'], `agents.${name}.retention`) }),
      ...(a['checks'] === undefined ? {} : { checks: parseChecks(a['checks'], `agents.${name}.checks`, checks) }),
      ...(a['schedule'] === undefined ? {} : { schedule: schedule(a['schedule'], `agents.${name}.schedule`) }),
    });
    tracked.noOthers();
  }
  const cfg: ControllerConfig = {
    url,
    listen: str(o, 'listen', `${u.hostname}:${u.port || (u.protocol === 'wss:' ? '443' : '80')}`),
    tlsCert: optStr(o, 'tlsCert'),
    tlsKey: optStr(o, 'tlsKey'),
    sshHost: str(o, 'sshHost', u.hostname),
    sshPort: int(o, 'sshPort', 22, 1, 65535),
    tunnelUser: str(o, 'tunnelUser', 'borgpull'),
    sshHostKeyFile: str(o, 'sshHostKeyFile', '/etc/ssh/ssh_host_ed25519_key.pub'),
    sshdConfig: str(o, 'sshdConfig', '/etc/ssh/sshd_config'),
    tunnelPortBase: int(o, 'tunnelPortBase', 40000, 1024, 65000),
    parallel: int(o, 'parallel', 4, 1, 256),
    isolation: isolation(o['isolation'] ?? 'namespace', 'isolation'),
    exclude: Object.freeze(strList(o['exclude'], 'exclude')),
    agents: Object.freeze(agents),
    // undefined only: a null is a mistake to report, not a request for the default.
    timeLimit: o['timeLimit'] === undefined ? DEFAULT_TIME_LIMIT : duration(o['timeLimit'], 'timeLimit'),
    quota: o['quota'] === undefined ? 0 : quota(o['quota'], 'quota'),
    minFreeSpace: o['minFreeSpace'] === undefined ? DEFAULT_MIN_FREE_SPACE : size(o['minFreeSpace'], 'minFreeSpace'),
    stopGrace: o['stopGrace'] === undefined ? DEFAULT_STOP_GRACE : duration(o['stopGrace'], 'stopGrace', 0, MAX_STOP_GRACE),
    retention: o['retention'] === undefined ? 'off' : parseRetention(o['retention'], 'retention'),
    checks,
    history: historyConfig(o['history']),
    schedule: o['schedule'] === undefined ? OFF : schedule(o['schedule'], 'schedule'),
    connectDelay:
      o['connectDelay'] === undefined ? DEFAULT_CONNECT_DELAY : duration(o['connectDelay'], 'connectDelay', 0, MAX_CONNECT_DELAY),
    status: parseStatus(o['status']),
    alerts: parseAlerts(o['alerts']),
    ...(o['metrics'] === undefined ? {} : { metrics: parseMetrics(o['metrics']) }),
  };
  top.noOthers();
  if (cfg.tlsCert !== undefined && cfg.tlsKey === undefined) bad('tlsKey', 'is required with tlsCert');
  if (!cfg.sshdConfig.startsWith('/')) bad('sshdConfig', 'must be an absolute path');
  return Object.freeze(cfg);
}

/**
 * Keys bound or checked once when the daemon starts (its listening socket,
 * the tunnel sshd's rules checked by sshd-check.ts, the job slots): a reload
 * or a job reading config.json again keeps the running values, so an edit
 * never reaches a job unchecked; the daemon logs them as needing a restart.
 */
export const RESTART_KEYS = [
  'listen',
  'tlsCert',
  'tlsKey',
  'sshdConfig',
  'sshPort',
  'tunnelUser',
  'parallel',
  // the metrics endpoint's socket (monitor/metrics-server.ts)
  'metrics',
] as const satisfies ReadonlyArray<keyof ControllerConfig>;

/** `next` with the running daemon's values of the RESTART_KEYS. */
export function pinRestartKeys(next: ControllerConfig, running: ControllerConfig): ControllerConfig {
  const pinned: Record<string, unknown> = { ...next };
  for (const k of RESTART_KEYS) pinned[k] = running[k];
  return Object.freeze(pinned as unknown as ControllerConfig);
}

export async function loadConfig(stateDir: string): Promise<ControllerConfig> {
  let text: string;
  try {
    text = await readFile(configPath(stateDir), 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      throw new ControllerError(
        'E_CONFIG_MISSING',
        `no controller state in ${stateDir}: run 'controller init --url ws://HOST:PORT' first (or pass --state-dir)`,
      );
    }
    throw new ControllerError('E_CONFIG_READ', `cannot read ${configPath(stateDir)}: ${errorMessage(err)}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new ControllerError('E_CONFIG_INVALID', `${configPath(stateDir)} is not valid JSON`);
  }
  return validateConfig(raw);
}

/** The file form: durations and sizes as a person writes them ("24h", "2G"), read back exactly. */
export function configJson(cfg: ControllerConfig): Record<string, unknown> {
  const agents: Record<string, unknown> = {};
  for (const [name, a] of Object.entries(cfg.agents)) {
    agents[name] = {
      ...a,
      ...(a.timeLimit === undefined ? {} : { timeLimit: formatDuration(a.timeLimit) }),
      ...(a.quota === undefined ? {} : { quota: a.quota === 0 ? 'none' : formatSizeExact(a.quota) }),
      ...(a.checks === undefined ? {} : { checks: checksJson(a.checks) }),
      ...(a.schedule === undefined ? {} : { schedule: formatSchedule(a.schedule) }),
    };
  }
  const { status, alerts, metrics, ...rest } = cfg;
  return {
    ...rest,
    ...monitorJson(status, alerts, metrics),
    agents,
    timeLimit: formatDuration(cfg.timeLimit),
    quota: cfg.quota === 0 ? 'none' : formatSizeExact(cfg.quota),
    minFreeSpace: formatSizeExact(cfg.minFreeSpace),
    stopGrace: formatDuration(cfg.stopGrace),
    checks: checksJson(cfg.checks),
    history: historyRuleJson(cfg.history),
    schedule: formatSchedule(cfg.schedule),
    connectDelay: formatDuration(cfg.connectDelay),
  };
}

function checksJson(c: CheckSettings): Record<string, unknown> {
  return { ...c, schedule: formatSchedule(c.schedule), maxDuration: formatDuration(c.maxDuration) };
}

export async function saveConfig(stateDir: string, cfg: ControllerConfig): Promise<void> {
  await writeFileAtomic(configPath(stateDir), JSON.stringify(configJson(cfg), null, 2) + '\n', 0o600);
}
