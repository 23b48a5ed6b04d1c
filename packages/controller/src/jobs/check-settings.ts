/**
 * `checks` in config.json: when the scheduler checks each repository and how
 * much each check reads. Read by config.ts, used by the check job (check.ts).
 */
import { ControllerError } from '../errors.js';
import { OFF, parseSchedule, type Schedule } from '../schedule/schedule.js';
import { parseDuration } from '../units.js';

export interface CheckSettings {
  /**
   * When the scheduler runs a check ("every 7d", the schedule grammar of
   * `schedule`), or "off" (only `controller verify` runs one).
   */
  readonly schedule: Schedule;
  /**
   * Seconds the repository part of a check may read segments for
   * (`borg check --repository-only --max-duration`); the next check goes on
   * where this one stopped, so successive checks read every segment.
   */
  readonly maxDuration: number;
  /** How many of the newest archives have their metadata and chunk references checked. */
  readonly lastArchives: number;
  /** Also decrypt and authenticate every chunk in the repository (`--verify-data`: reads all of it). */
  readonly verifyData: boolean;
}

export const DEFAULT_CHECKS: CheckSettings = Object.freeze({ schedule: OFF, maxDuration: 600, lastArchives: 3, verifyData: false });
export const MAX_CHECK_DURATION = 7 * 86_400;
export const MAX_CHECK_ARCHIVES = 10_000;
const KNOWN = ['schedule', 'maxDuration', 'lastArchives', 'verifyData'];

function bad(field: string, what: string): never {
  throw new ControllerError('E_CONFIG_INVALID', `config: ${field} ${what}`);
}

/**
 * Reads `checks` (global, over the defaults) or `agents.NAME.checks` (over the
 * global ones): each key given replaces the one below it. The schedule has
 * the grammar of `schedule` (schedule/schedule.ts): "every 7d", a daily
 * window, or "off".
 */
export function parseChecks(v: unknown, field: string, base: CheckSettings): CheckSettings {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(field, `must be an object (${KNOWN.join(', ')})`);
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!KNOWN.includes(k)) bad(field, `has an unknown key "${k.slice(0, 40)}" (known: ${KNOWN.join(', ')})`);
  }
  const out = { ...base };
  if (o['schedule'] !== undefined) {
    const s = parseSchedule(o['schedule']);
    if (typeof s === 'string') bad(`${field}.schedule`, s);
    out.schedule = s;
  }
  if (o['maxDuration'] !== undefined) {
    const d = parseDuration(o['maxDuration'], 1, MAX_CHECK_DURATION);
    if (typeof d === 'string') bad(`${field}.maxDuration`, d);
    out.maxDuration = d;
  }
  if (o['lastArchives'] !== undefined) {
    const n = o['lastArchives'];
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_CHECK_ARCHIVES) {
      bad(`${field}.lastArchives`, `must be a whole number in 1..${MAX_CHECK_ARCHIVES}`);
    }
    out.lastArchives = n;
  }
  if (o['verifyData'] !== undefined) {
    if (typeof o['verifyData'] !== 'boolean') bad(`${field}.verifyData`, 'must be true or false');
    out.verifyData = o['verifyData'];
  }
  return Object.freeze(out);
}
