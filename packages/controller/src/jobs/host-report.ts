/**
 * What a client's agent reports about it (passwd, group, hostname, mount
 * table, sshd host key), turned into what a job may use: checked fields and
 * files written from them, never the client's text. The decoder has already
 * bounded every string (codec.ts); this is the meaning check.
 */
import { ControllerError } from '../errors.js';
import { formatGroup, formatPasswd, parseGroup, parsePasswd } from './client-names.js';
import { mountExcludes, parseMounts } from './excludes.js';

/** Key types an OpenSSH sshd serves as host keys (no certificates: the key itself is pinned). */
const HOST_KEY_TYPES = new Set(['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'ssh-rsa']);
/** 'TYPE BASE64', nothing else: no options, marker, comment, second key or line break. */
const HOST_KEY_RE = /^([a-z0-9-]{1,40}) ([A-Za-z0-9+/]{16,16384}={0,2})$/;

/**
 * The client's sshd host key as `TYPE BASE64`, checked: a known type, base64
 * that round-trips, and a blob whose own type name is that type. Throws
 * E_JOB_HOSTKEY. What reaches known_hosts is this and the alias, so the client
 * cannot add a line (`@cert-authority * ...`), a host pattern or an option.
 */
export function checkHostKey(text: string): string {
  const m = HOST_KEY_RE.exec(text);
  const type = m?.[1];
  const b64 = m?.[2];
  if (type === undefined || b64 === undefined || !HOST_KEY_TYPES.has(type)) {
    throw new ControllerError('E_JOB_HOSTKEY', "the client's sshd host key is not a plain 'TYPE BASE64' ssh public key");
  }
  const blob = Buffer.from(b64, 'base64');
  const inner = blob.length >= 4 ? blob.subarray(4, 4 + blob.readUInt32BE(0)).toString('latin1') : '';
  if (blob.toString('base64') !== b64 || inner !== type) {
    throw new ControllerError('E_JOB_HOSTKEY', "the client's sshd host key is not a valid ssh public key");
  }
  return `${type} ${b64}`;
}

/** The known_hosts file a job's sshfs pins the client with: one line, `ALIAS TYPE BASE64`. */
export function knownHostsFile(alias: string, hostKey: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(alias)) throw new ControllerError('E_JOB_HOSTKEY', 'bad host key alias');
  return `${alias} ${checkHostKey(hostKey)}\n`;
}

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
  /** known_hosts text pinning the client's sshd under `alias` */
  readonly knownHosts: string;
  /** borg exclude patterns for the client's pseudo and network mounts */
  readonly mountExcludes: readonly string[];
}

/** Checks a host report and builds everything a job takes from it. */
export function checkHostReport(
  report: { hostname: string; passwd: string; group: string; mounts: string; sshHostKey: string },
  alias: string,
): HostReport {
  const users = parsePasswd(report.passwd);
  const groups = parseGroup(report.group);
  return {
    hostname: clientHostname(report.hostname),
    passwd: formatPasswd(users),
    group: formatGroup(groups),
    users: users.length,
    groups: groups.length,
    knownHosts: knownHostsFile(alias, report.sshHostKey),
    mountExcludes: mountExcludes(parseMounts(report.mounts)),
  };
}
