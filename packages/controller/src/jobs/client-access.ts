import type { AgentLink } from '../agent-link.js';
import type { ControllerConfig } from '../config.js';
import type { StatePaths } from '../state.js';
import { readHostKey } from '../tunnel-keys.js';
import type { AgentRecord } from '../registry.js';
import { ensureBorgBase } from './borg-base.js';
import { checkHostReport, type HostReport } from './host-report.js';
import { JobDir, ensureMountpoint, removeMountpoint } from './job-dir.js';
import { hostAlias, jobEnv } from './job-env.js';
import type { Cleanup } from './cleanup.js';

export const NSSWITCH = 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n';

export interface ClientAccess {
  /** The client's report, checked: names, excludes and host key to use. */
  readonly host: HostReport;
  readonly dir: JobDir;
  /** Environment for a job script (see job-script/script.ts). */
  readonly env: Record<string, string>;
}

/**
 * Everything a job needs before its script runs: the agent's reverse tunnel,
 * the client's host report (names, mounts, sshd host key), checked, a scratch
 * directory with the passwd/group rebuilt from its names and ids (never the
 * client's text), the agent's borg base dir and its stable mountpoint. Each
 * step pushes its undo onto `cleanup`.
 */
export async function openClientAccess(opts: {
  p: StatePaths;
  config: ControllerConfig;
  link: AgentLink;
  agent: AgentRecord;
  jobId: string;
  cleanup: Cleanup;
  sshKey: string;
  mountOpts: string;
  remotePath: string;
}): Promise<ClientAccess> {
  const { p, config, link, agent, cleanup } = opts;
  const hostKey = await readHostKey(config.sshHostKeyFile);
  await link.channel.request(
    { type: 'tunnel.open', port: agent.port, sshHost: config.sshHost, sshPort: config.sshPort, user: config.tunnelUser, hostKey },
    40_000,
  );
  cleanup.push(['close the tunnel', () => link.channel.request({ type: 'tunnel.close' }, 15_000)]);
  const report = await link.channel.request({ type: 'host.report.get' });
  const host = checkHostReport(report, hostAlias(agent.name));
  const dir = await JobDir.create(`${p.jobsDir}/${opts.jobId}`);
  cleanup.push(['remove the job directory', () => dir.remove()]);
  dir.expect('sshfs.err');
  dir.expect('cd.err');
  await ensureBorgBase(p, agent.name);
  const env = jobEnv(p, {
    agent,
    jobId: opts.jobId,
    jobDir: dir.path,
    sshKey: opts.sshKey,
    mountOpts: opts.mountOpts,
    remotePath: opts.remotePath,
    files: {
      knownHosts: await dir.file('known_hosts', host.knownHosts),
      passwd: await dir.file('passwd', host.passwd, 0o644),
      group: await dir.file('group', host.group, 0o644),
      nsswitch: await dir.file('nsswitch.conf', NSSWITCH, 0o644),
    },
  });
  await ensureMountpoint(p.mountpoint(agent.name));
  cleanup.push(['remove the mountpoint', () => removeMountpoint(p.mountpoint(agent.name))]);
  return { host, dir, env };
}
