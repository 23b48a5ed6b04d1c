/**
 * Agents' versions as the controller sees them: the `software` string of an
 * agent's hello (`borgpull-agent/0.1.0`) compared with semver precedence
 * (semver.org 2.0.0, section 11) against the controller's own version.
 * The string is the agent's own word: it is parsed, never trusted, and one
 * that is not `borgpull-agent/SEMVER` is "unknown", whatever it claims.
 */

export interface SemVer {
  /** major, minor, patch: digit strings without leading zeros (compared by length, then digits: no overflow) */
  readonly core: readonly [string, string, string];
  /** pre-release identifiers; empty for a release */
  readonly pre: readonly string[];
}

export type VersionStatus = 'current' | 'newer' | 'outdated' | 'unknown';

const NUMERIC = /^(?:0|[1-9][0-9]*)$/;
const ALNUM = /^[0-9A-Za-z-]+$/;
/** Long enough for any real version; a longer one is not worth parsing. */
const MAX_VERSION = 128;

/** Parses `MAJOR.MINOR.PATCH[-PRE][+BUILD]`; undefined for anything else. Linear: no backtracking regex. */
export function parseSemver(text: string): SemVer | undefined {
  if (text.length === 0 || text.length > MAX_VERSION) return undefined;
  const plus = text.indexOf('+');
  const main = plus === -1 ? text : text.slice(0, plus);
  if (
    plus !== -1 &&
    !text
      .slice(plus + 1)
      .split('.')
      .every((b) => ALNUM.test(b))
  )
    return undefined;
  const dash = main.indexOf('-');
  const coreText = dash === -1 ? main : main.slice(0, dash);
  const [major, minor, patch, ...more] = coreText.split('.');
  if (major === undefined || minor === undefined || patch === undefined || more.length > 0) return undefined;
  if (![major, minor, patch].every((n) => NUMERIC.test(n))) return undefined;
  const pre = dash === -1 ? [] : main.slice(dash + 1).split('.');
  // A numeric pre-release identifier has no leading zero; others are [0-9A-Za-z-]+.
  if (!pre.every((p) => ALNUM.test(p) && (!/^[0-9]+$/.test(p) || NUMERIC.test(p)))) return undefined;
  return { core: [major, minor, patch], pre };
}

function compareNumeric(a: string, b: string): number {
  return a.length !== b.length ? Math.sign(a.length - b.length) : a < b ? -1 : a > b ? 1 : 0;
}

/** Semver precedence: -1, 0 or 1. Build metadata is ignored. */
export function compareSemver(a: SemVer, b: SemVer): number {
  for (const [i, x] of a.core.entries()) {
    const c = compareNumeric(x, b.core[i] ?? '');
    if (c !== 0) return c;
  }
  // A pre-release has lower precedence than its release.
  if (a.pre.length === 0 || b.pre.length === 0) return Math.sign(b.pre.length - a.pre.length);
  for (const [i, x] of a.pre.entries()) {
    const y = b.pre[i];
    if (y === undefined) break;
    const xn = NUMERIC.test(x);
    const yn = NUMERIC.test(y);
    // Numeric identifiers sort before alphanumeric ones; alphanumerics compare in ASCII order.
    const c = xn && yn ? compareNumeric(x, y) : xn ? -1 : yn ? 1 : x < y ? -1 : x > y ? 1 : 0;
    if (c !== 0) return c;
  }
  return Math.sign(a.pre.length - b.pre.length);
}

const PREFIX = 'borgpull-agent/';

/** The version in a `borgpull-agent/SEMVER` software string; undefined for anything else. */
export function agentSemver(software: string | null): SemVer | undefined {
  return software?.startsWith(PREFIX) ? parseSemver(software.slice(PREFIX.length)) : undefined;
}

/** How an agent's software string compares with this controller's version. */
export function versionStatus(software: string | null, controllerVersion: string): VersionStatus {
  const theirs = agentSemver(software);
  const ours = parseSemver(controllerVersion);
  if (!theirs || !ours) return 'unknown';
  const c = compareSemver(theirs, ours);
  return c < 0 ? 'outdated' : c > 0 ? 'newer' : 'current';
}

/**
 * The VERSION cell of `controller agents`: the (already escaped) software
 * string, flagged when it is older than the daemon or cannot be parsed.
 */
export function versionCell(view: { version: string | null; outdated: boolean }): string {
  if (view.version === null) return '-';
  if (view.outdated) return `${view.version} (outdated)`;
  return agentSemver(view.version) ? view.version : `${view.version} (unknown)`;
}
