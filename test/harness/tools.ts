import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Tool name -> Debian package that provides it. */
const TOOLS: ReadonlyArray<readonly [tool: string, pkg: string]> = [
  ['ip', 'iproute2'],
  ['unshare', 'util-linux'],
  ['nsenter', 'util-linux'],
  ['setpriv', 'util-linux'],
  ['sshd', 'openssh-server'],
  ['ssh', 'openssh-client'],
  ['ssh-keygen', 'openssh-client'],
  ['sshfs', 'sshfs'],
  ['fusermount3', 'fuse3'],
  ['borg', 'borgbackup'],
  ['tar', 'tar'],
];

const SEARCH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** Absolute path of an executable found on PATH or in the usual sbin/bin dirs, or undefined. */
export function findTool(name: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter).filter(Boolean), ...SEARCH];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/**
 * Throws (never skips) when a tool the harness needs is missing, or when not
 * running as root, naming the Debian packages to install.
 */
export function requireTools(): void {
  const missing = TOOLS.filter(([tool]) => findTool(tool) === undefined);
  const problems: string[] = [];
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map(([, pkg]) => pkg))].join(' ');
    problems.push(
      `missing tools: ${missing.map(([tool]) => tool).join(', ')}; ` + `install them with: apt-get update && apt-get install -y ${pkgs}`,
    );
  }
  if (findTool('sshd') !== undefined && findTool('sshd') !== '/usr/sbin/sshd') {
    try {
      accessSync('/usr/sbin/sshd', constants.X_OK);
    } catch {
      problems.push('sshd must be /usr/sbin/sshd (re-exec needs an absolute path): apt-get install -y openssh-server');
    }
  }
  try {
    accessSync('/dev/fuse', constants.R_OK | constants.W_OK);
  } catch {
    problems.push('/dev/fuse is not usable: apt-get install -y fuse3 (and load the fuse module)');
  }
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    problems.push('the e2e harness needs root (network and mount namespaces, sshd, FUSE)');
  }
  if (problems.length > 0) {
    throw new Error(`borgpull test harness cannot run:\n  - ${problems.join('\n  - ')}`);
  }
}
