import { randomBytes } from 'node:crypto';
import { SFTP_SECRET_BYTES } from '@borgpull/protocol';
import type { AgentLink } from '../agent-link.js';
import type { ControllerConfig } from '../config.js';
import { ControllerError } from '../errors.js';
import type { StatePaths } from '../state.js';
import { readHostKey } from '../tunnel-keys.js';
import type { AgentRecord } from '../registry.js';
import { ensureBorgBase } from './borg-base.js';
import { checkHostReport, type HostReport } from './host-report.js';
import { JobDir, ensureMountpoint, removeMountpoint } from './job-dir.js';
import { jobEnv } from './job-env.js';
import type { Cleanup } from './cleanup.js';

export const NSSWITCH = 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n';

export interface ClientAccess {
  /** The client's report, checked: names and excludes. */
  readonly host: HostReport;
  readonly dir: JobDir;
  /** Environment for a job script (see job-script/script.ts). */
  readonly env: Record<string, string>;
}

/**
 * Everything a job needs before its script runs: the agent's reverse tunnel
 * to its SFTP socket, opened with a fresh secret (sent over the sealed
 * session, kept on this side in a root-only file of the job dir: never in an
 * argv or environment another local user can read), the client's host report
 * (names, mounts), checked, a scratch directory with the passwd/group rebuilt
 * from its names and ids (never the client's text), the agent's borg base dir
 * and its stable mountpoint. Each step pushes its undo onto `cleanup`.
 */
export async function openClientAccess(opts: {
  p: StatePaths;
  config: ControllerConfig;
  link: AgentLink;
  agent: AgentRecord;
  jobId: string;
  cleanup: Cleanup;
  mountOpts: string;
}): Promise<ClientAccess> {
  const { p, config, link, agent, cleanup } = opts;
  const hostKey = await readHostKey(config.sshHostKeyFile);
  const dir = await JobDir.create(`${p.jobsDir}/${opts.jobId}`);
  cleanup.push(['remove the job directory', () => dir.remove()]);
  dir.expect('sshfs.err');
  dir.expect('cd.err');
  // The job dir is 0700 root and the file 0600: only root on this server reads the secret.
  const secret = randomBytes(SFTP_SECRET_BYTES);
  const secretFile = await dir.file('sftp.secret', secret);
  const opened = await link.channel.request(
    {
      type: 'tunnel.open',
      port: agent.port,
      sshHost: config.sshHost,
      sshPort: config.sshPort,
      user: config.tunnelUser,
      hostKey,
      sftpSecret: secret,
    },
    40_000,
  );
  cleanup.push(['close the tunnel', () => link.channel.request({ type: 'tunnel.close' }, 15_000)]);
  if (opened.sftp !== true)
    throw new ControllerError(
      'E_JOB_AGENT_SFTP',
      "this agent is older than the controller: its tunnel ends at the client's sshd, which backups no longer use; upgrade the agent",
    );
  const report = await link.channel.request({ type: 'host.report.get' });
  const host = checkHostReport(report);
  await ensureBorgBase(p, agent.name);
  const env = jobEnv(p, {
    agent,
    jobId: opts.jobId,
    jobDir: dir.path,
    mountOpts: opts.mountOpts,
    files: {
      sftpSecret: secretFile,
      passwd: await dir.file('passwd', host.passwd, 0o644),
      group: await dir.file('group', host.group, 0o644),
      nsswitch: await dir.file('nsswitch.conf', NSSWITCH, 0o644),
    },
  });
  await ensureMountpoint(p.mountpoint(agent.name));
  cleanup.push(['remove the mountpoint', () => removeMountpoint(p.mountpoint(agent.name))]);
  return { host, dir, env };
}
