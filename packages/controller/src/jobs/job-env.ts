/**
 * The whole environment of a job script (see job-script/script.ts), built from nothing.
 * Every program in a job runs as root on the server next to the client's
 * tree, so each variable is one of these, and nothing is inherited:
 * - sh, mount, mountpoint, stat, kill, chroot, setpriv, unshare: PATH only
 *   (fixed; LIBMOUNT_* and the like are not passed).
 * - the SFTP connector (python3 -I -S: no user site, no PYTHON* variables,
 *   no site module) and the sshfs it becomes: every option on the command
 *   line; no ssh runs (`-o passive`). The job's SFTP secret is a file name
 *   here, never the secret itself.
 * - borg (Python, root, no -s): see borgEnv: HOME on the server, no user
 *   site dir, no PYTHON* or BORG_* but ours, TMPDIR on the server.
 */
import type { StatePaths } from '../state.js';
import { JOB_HOST_PREFIX, borgEnv } from './borg.js';

export interface JobEnvOptions {
  readonly agent: { readonly name: string; readonly port: number };
  readonly jobId: string;
  readonly jobDir: string;
  readonly mountOpts: string;
  /** Files in the job dir: the SFTP secret (0600), and files written from checked fields (host-report.ts). */
  readonly files: { readonly sftpSecret: string; readonly passwd: string; readonly group: string; readonly nsswitch: string };
}

/** The job script's environment; backup.ts adds ARCHIVE. */
export function jobEnv(p: StatePaths, o: JobEnvOptions): Record<string, string> {
  const name = o.agent.name;
  return borgEnv(p, name, {
    BORG_HOST_ID: `${JOB_HOST_PREFIX}${o.jobId}`,
    MNT: p.mountpoint(name),
    MOUNT_OPTS: o.mountOpts,
    PORT: String(o.agent.port),
    SFTP_SECRET: o.files.sftpSecret,
    PASSPHRASE_FILE: p.passphrase(name),
    REPO: p.repo(name),
    JOB_DIR: o.jobDir,
    CLIENT_PASSWD: o.files.passwd,
    CLIENT_GROUP: o.files.group,
    NSSWITCH: o.files.nsswitch,
  });
}
