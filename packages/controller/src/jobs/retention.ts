/**
 * Keep rules and the pruning freeze: which archives `borg prune` may delete,
 * and when it must not run at all. Pure functions: the prune job (prune.ts)
 * runs borg with what these decide.
 */
import { ControllerError } from '../errors.js';
import type { JobRecord } from './job-store.js';
import { isGood } from './job-store.js';

/** How many archives to keep per period; 0 means the rule is not used. */
export interface KeepRules {
  /** Keep every archive newer than this (borg's interval: a number and H, d, w or y). */
  readonly keepWithin?: string;
  readonly hourly: number;
  readonly daily: number;
  readonly weekly: number;
  readonly monthly: number;
  readonly yearly: number;
}

/** `off`: nothing is ever pruned for that agent (also what an absent key means). */
export type Retention = KeepRules | 'off';

const COUNT_KEYS = ['hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
const KNOWN = ['keepWithin', ...COUNT_KEYS];
/** More than any repository holds: a count is a number of periods, and borg keeps at most one archive per period. */
export const MAX_KEEP = 100_000;
/**
 * borg's interval grammar, less `m`: to borg `m` is months, while every other
 * duration in config.json reads `m` as minutes. `90m` meant as minutes would
 * keep 90 months; refused, the operator writes days or weeks instead.
 */
const WITHIN_RE = /^([1-9][0-9]{0,5})([Hdwy])$/;

function bad(field: string, what: string): never {
  throw new ControllerError('E_CONFIG_INVALID', `config: ${field} ${what}`);
}

/**
 * Reads a `retention` value from config.json: `"off"`, or an object of keep
 * rules with at least one rule that keeps something. Unknown keys are refused:
 * a typo (`"dayly": 7`) would otherwise keep fewer archives than the operator
 * asked for, and pruning deletes backups.
 */
export function parseRetention(v: unknown, field: string): Retention {
  if (v === 'off') return 'off';
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(field, `must be "off" or an object of keep rules (${KNOWN.join(', ')})`);
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!KNOWN.includes(k)) bad(field, `has an unknown key "${k.slice(0, 40)}" (known: ${KNOWN.join(', ')})`);
  }
  const counts = {} as Record<(typeof COUNT_KEYS)[number], number>;
  for (const k of COUNT_KEYS) {
    const n = o[k] ?? 0;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_KEEP)
      bad(`${field}.${k}`, `must be a whole number in 0..${MAX_KEEP}`);
    counts[k] = n;
  }
  let keepWithin: string | undefined;
  if (o['keepWithin'] !== undefined) {
    const w = o['keepWithin'];
    if (typeof w !== 'string' || !WITHIN_RE.test(w)) {
      bad(`${field}.keepWithin`, 'must be a number and H (hours), d (days), w (weeks) or y (years), e.g. "2d"');
    }
    keepWithin = w;
  }
  if (keepWithin === undefined && COUNT_KEYS.every((k) => counts[k] === 0)) {
    bad(field, 'keeps nothing: give at least one rule (keepWithin, or a count above 0), or "off"');
  }
  return Object.freeze({ ...(keepWithin === undefined ? {} : { keepWithin }), ...counts });
}

/** The agent's rules: its own `agents.NAME.retention` replaces the default whole (never merged rule by rule). */
export function retentionOf(
  config: { readonly retention: Retention; readonly agents: Readonly<Record<string, { readonly retention?: Retention }>> },
  agent: string,
): Retention {
  return config.agents[agent]?.retention ?? config.retention;
}

/** The keep rules as borg prune arguments, each in one word; rules at 0 are left out. */
export function keepArgs(r: KeepRules): string[] {
  const out: string[] = [];
  if (r.keepWithin !== undefined) out.push(`--keep-within=${r.keepWithin}`);
  for (const k of COUNT_KEYS) if (r[k] > 0) out.push(`--keep-${k}=${r[k]}`);
  return out;
}

/**
 * The archives this controller made for `agent` (backup.ts archiveName:
 * AGENT-YYYY-MM-DDTHH:MM:SS) as a borg glob, and nothing else: an archive an
 * operator made by hand in the repository (`pc1-before-upgrade`) is never
 * pruned. Agent names hold only letters, digits, '.', '_' and '-'
 * (checkAgentName), none of them a glob character. borg prune also matches
 * the `.checkpoint` archives of these names (its own rule for checkpoints).
 */
export function archiveGlob(agent: string): string {
  const d = '[0-9]';
  return `${agent}-${d.repeat(4)}-${d.repeat(2)}-${d.repeat(2)}T${d.repeat(2)}:${d.repeat(2)}:${d.repeat(2)}`;
}

/**
 * How many of an agent's newest finished backups the freeze looks at.
 */
export const FREEZE_LOOKBACK = 2;

/**
 * The pruning freeze. `backups`: the agent's finished backup records, newest
 * first (at least the newest FREEZE_LOOKBACK). The agent is frozen, and
 * nothing of it is pruned, unless its two newest finished backups are both
 * good (succeeded or warning); an agent with a single backup on record is not
 * frozen if that one was good. So after any failed or offline backup it takes
 * two good ones in a row before pruning resumes: a client that fails, or
 * comes back after a long absence, keeps every archive it had until it has
 * shown it backs up again. Returns why it is frozen, or undefined.
 */
export function freezeReason(backups: readonly JobRecord[]): string | undefined {
  const done = backups.filter((b) => b.status !== 'running').slice(0, FREEZE_LOOKBACK);
  if (done.length === 0) return 'no finished backup on record';
  const [newest, before] = done;
  if (newest && !isGood(newest)) return `the newest backup (${describe(newest)}) did not succeed`;
  if (before && !isGood(before))
    return `the backup before the newest (${describe(before)}) did not succeed: pruning resumes after two good backups in a row`;
  return undefined;
}

function describe(j: JobRecord): string {
  return `${j.id}, ${new Date(j.endedAt ?? j.startedAt).toISOString().slice(0, 19)}Z, ${j.status}${j.code ? ` ${j.code}` : ''}`;
}
