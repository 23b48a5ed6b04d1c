/**
 * What a client's agent reports about it (passwd, group, hostname, mount
 * table), turned into what a job may use: checked fields and
 * files written from them, never the client's text. The decoder has already
 * bounded every string (codec.ts); this is the meaning check.
 */
import { formatGroup, formatPasswd, parseGroup, parsePasswd } from './client-names.js';
import { mountExcludes, parseMounts } from './excludes.js';

/**
 * The hostname, if it is one (letters, digits, `.`, `-`, `_`, at most 253):
 * kept for logs only, nothing reads or runs it. Anything else is undefined.
 */
export function clientHostname(h: string): string | undefined {
  return /^[A-Za-z0-9_]([A-Za-z0-9._-]{0,252})$/.test(h) ? h : undefined;
}

export interface HostReport {
  readonly hostname: string | undefined;
  /** passwd and group texts for the job to bind, rebuilt from names and ids */
  readonly passwd: string;
  readonly group: string;
  readonly users: number;
  readonly groups: number;
  /** borg exclude patterns for the client's pseudo and network mounts */
  readonly mountExcludes: readonly string[];
}

/** Checks a host report and builds everything a job takes from it. */
export function checkHostReport(report: { hostname: string; passwd: string; group: string; mounts: string }): HostReport {
  const users = parsePasswd(report.passwd);
  const groups = parseGroup(report.group);
  return {
    hostname: clientHostname(report.hostname),
    passwd: formatPasswd(users),
    group: formatGroup(groups),
    users: users.length,
    groups: groups.length,
    mountExcludes: mountExcludes(parseMounts(report.mounts)),
  };
}
