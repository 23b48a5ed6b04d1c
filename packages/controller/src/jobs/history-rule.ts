/**
 * How much job history the controller keeps: config.json's `history`, e.g.
 * `{ "keep": "400d", "maxJobs": 100000 }`. Applied when the history file is
 * compacted (at start, and when the file has doubled since the last time).
 */
import { ControllerError } from '../errors.js';
import { formatDuration, parseDuration } from '../units.js';
import { isGood, type JobRecord } from './job-types.js';

export interface HistoryRule {
  /** Records that ended (or, still without an end, started) longer ago than this many seconds are dropped. */
  readonly keep: number;
  /** At most this many records are kept (the newest). */
  readonly maxJobs: number;
}

/**
 * 400 days: a year of history plus a margin, so "the same week last year" is
 * still there. 100,000 jobs: two hundred agents with a backup, a prune and a
 * compact a day, plus a weekly check, for over five months; ~40 MB of memory
 * in the daemon (measured in `npm run bench -- history`).
 */
export const DEFAULT_HISTORY: HistoryRule = Object.freeze({ keep: 400 * 86_400, maxJobs: 100_000 });
const MIN_KEEP = 86_400;
const MAX_KEEP = 36_500 * 86_400;
const MIN_JOBS = 100;
/** Every record is held in memory: a million is ~400 MB, and more is a mistake. */
const MAX_JOBS = 1_000_000;

/** The rule in config.json's `history`, or an error text naming the bad field (the caller throws E_CONFIG_INVALID). */
export function parseHistoryRule(v: unknown): HistoryRule | string {
  if (v === undefined) return DEFAULT_HISTORY;
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    return 'history must be an object such as {"keep": "400d", "maxJobs": 100000}';
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (k !== 'keep' && k !== 'maxJobs') return `history.${k.slice(0, 40)} is not a setting (keep, maxJobs)`;
  let keep = DEFAULT_HISTORY.keep;
  if (o['keep'] !== undefined) {
    const r = parseDuration(o['keep'], MIN_KEEP, MAX_KEEP);
    if (typeof r === 'string') return `history.keep ${r}`;
    keep = r;
  }
  let maxJobs = DEFAULT_HISTORY.maxJobs;
  if (o['maxJobs'] !== undefined) {
    const m = o['maxJobs'];
    if (typeof m !== 'number' || !Number.isInteger(m) || m < MIN_JOBS || m > MAX_JOBS)
      return `history.maxJobs must be an integer in ${MIN_JOBS}..${MAX_JOBS}`;
    maxJobs = m;
  }
  return Object.freeze({ keep, maxJobs });
}

/** config.json's `history`, or E_CONFIG_INVALID naming the field. */
export function historyConfig(v: unknown): HistoryRule {
  const r = parseHistoryRule(v);
  if (typeof r === 'string') throw new ControllerError('E_CONFIG_INVALID', `config: ${r}`);
  return r;
}

/** The file form of a rule, read back exactly by parseHistoryRule. */
export function historyRuleJson(rule: HistoryRule): { keep: string; maxJobs: number } {
  return { keep: formatDuration(rule.keep), maxJobs: rule.maxJobs };
}

/**
 * The records `rule` keeps, in their order (oldest first): the newest
 * `maxJobs` that are younger than `keep`, plus, whatever their age or rank,
 * every running job and each agent's newest good backup: a client that has
 * been failing for a year must still show when it last had a good one.
 */
export function applyHistoryRule(records: readonly JobRecord[], rule: HistoryRule, now: number): JobRecord[] {
  const cutoff = now - rule.keep * 1000;
  const lastGood = new Set<string>();
  const keep: boolean[] = new Array<boolean>(records.length).fill(false);
  let kept = 0;
  for (let i = records.length - 1; i >= 0; i--) {
    const r = records[i]!;
    const good = r.kind === 'backup' && isGood(r);
    if (kept < rule.maxJobs && (r.endedAt ?? r.startedAt) >= cutoff) {
      keep[i] = true;
      kept++;
    } else keep[i] = r.status === 'running' || (good && !lastGood.has(r.agent));
    if (good) lastGood.add(r.agent);
  }
  return records.filter((_, i) => keep[i]);
}
