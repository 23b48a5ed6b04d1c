/**
 * The whole environment of a job script (see job-script/script.ts), built from nothing.
 * Every program in a job runs as root on the server next to the client's
 * tree, so each variable is one of these, and nothing is inherited:
 * - sh, mount, mountpoint, stat, kill, chroot, setpriv, unshare: PATH only
 *   (fixed; LIBMOUNT_* and the like are not passed).
 * - sshfs and its ssh: `-F /dev/null` and every option on the command line;
 *   ssh takes ~ from the passwd database, which is still the server's when
 *   sshfs starts (the client's names are bound after the mount), and no
 *   SSH_AUTH_SOCK, SSH_ASKPASS or DISPLAY reaches it.
 * - borg (Python, root, no -s): see borgEnv: HOME on the server, no user
 *   site dir, no PYTHON* or BORG_* but ours, TMPDIR on the server.
 */
import type { StatePaths } from '../state.js';
import { JOB_HOST_PREFIX, borgEnv } from './borg.js';

export interface JobEnvOptions {
  readonly agent: { readonly name: string; readonly port: number };
  readonly jobId: string;
  readonly jobDir: string;
  readonly sshKey: string;
  readonly mountOpts: string;
  readonly remotePath: string;
  /** Files in the job dir, written from checked fields (host-report.ts). */
  readonly files: { readonly knownHosts: string; readonly passwd: string; readonly group: string; readonly nsswitch: string };
}

export function hostAlias(agent: string): string {
  return `borgpull-agent-${agent}`;
}

/** The job script's environment; backup.ts adds ARCHIVE. */
export function jobEnv(p: StatePaths, o: JobEnvOptions): Record<string, string> {
  const name = o.agent.name;
  return borgEnv(p, name, {
    BORG_HOST_ID: `${JOB_HOST_PREFIX}${o.jobId}`,
    MNT: p.mountpoint(name),
    MOUNT_OPTS: o.mountOpts,
    REMOTE_PATH: o.remotePath,
    PORT: String(o.agent.port),
    SSH_KEY: o.sshKey,
    KNOWN_HOSTS: o.files.knownHosts,
    HOST_ALIAS: hostAlias(name),
    PASSPHRASE_FILE: p.passphrase(name),
    REPO: p.repo(name),
    JOB_DIR: o.jobDir,
    CLIENT_PASSWD: o.files.passwd,
    CLIENT_GROUP: o.files.group,
    NSSWITCH: o.files.nsswitch,
  });
}
