import type { Logger } from 'pino';
import { execa } from 'execa';
import { BorgpullError, type AgentMessage } from '@borgpull/protocol';
import type { ControllerDaemon } from '../daemon.js';
import { ControllerError } from '../errors.js';
import { readHostKey } from '../tunnel-keys.js';
import { borgEnv, breakStaleJobLock, deleteArchive, ensureRepo, JOB_HOST_PREFIX, listArchives } from './borg.js';
import { mountExcludes, parseMounts } from './excludes.js';
import { JobDir, ensureMountpoint, removeMountpoint } from './job-dir.js';
import { newJobId, type JobRecord, type JobStore } from './job-store.js';
import { BorgLogReader, type JobEvent } from './progress.js';
import { CHROOT_CREATE, NAMESPACE_CREATE, jobCommand } from './scripts.js';
import { loadConfig, type Isolation } from '../config.js';

export const NSSWITCH = 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n';

/** Archive names: AGENT-YYYY-MM-DDTHH:MM:SS (UTC). */
export function archiveName(agent: string, at = new Date()): string {
  return `${agent}-${at.toISOString().slice(0, 19)}`;
}

/** Errors that mean the client vanished under borg: the archive is not a good backup. */
const LOST = /Errno (107|5|103|104|110)\b|Transport endpoint is not connected|Input\/output error|Connection reset/;

export interface BackupContext {
  readonly daemon: ControllerDaemon;
  readonly store: JobStore;
  readonly log: Logger;
  readonly running: Set<string>;
}

/**
 * One pulled backup: tunnel, identity, sshfs + borg in a private namespace,
 * cleanup whatever happened, a truthful job record.
 */
export async function runBackup(ctx: BackupContext, agent: string, emit: (e: JobEvent) => void, signal: AbortSignal): Promise<JobRecord> {
  const { daemon, store } = ctx;
  const p = daemon.paths;
  const job: JobRecord = { id: newJobId(), kind: 'backup', agent, startedAt: Date.now(), status: 'running' };
  const log = ctx.log.child({ agentId: agent, jobId: job.id });
  const say = (e: Omit<JobEvent, 'agent' | 'jobId'>): void => emit({ agent, jobId: job.id, ...e });
  let link;
  try {
    link = daemon.link(agent);
  } catch (err) {
    job.status = (err as BorgpullError).code === 'E_AGENT_OFFLINE' ? 'offline' : 'failed';
    job.code = (err as BorgpullError).code;
    job.reason = (err as Error).message;
    job.endedAt = Date.now();
    await store.add(job);
    return job;
  }
  await store.add(job);
  ctx.running.add(job.id);
  log.info('backup started');
  const cleanup: Array<[string, () => Promise<unknown>]> = [];
  const rec = daemon.registry.get(agent)!;
  try {
    // Read at every job, so edits to excludes or isolation apply without a restart.
    const config = await loadConfig(p.root);
    const settings = config.agents[agent];
    const isolation: Isolation = settings?.isolation ?? config.isolation;
    say({ phase: 'tunnel' });
    const hostKey = await readHostKey(config.sshHostKeyFile);
    await link.channel.request(
      { type: 'tunnel.open', port: rec.port, sshHost: config.sshHost, sshPort: config.sshPort, user: config.tunnelUser, hostKey },
      40_000,
    );
    cleanup.push(['close the tunnel', () => link.channel.request({ type: 'tunnel.close' }, 15_000)]);
    signal.throwIfAborted();

    say({ phase: 'identity' });
    const id = await link.channel.request<Extract<AgentMessage, { type: 'identity' }>>({ type: 'identity.get' });
    const dir = await JobDir.create(`${p.jobsDir}/${job.id}`);
    cleanup.push(['remove the job directory', () => dir.remove()]);
    const env: Record<string, string> = borgEnv(p, {
      BORG_HOST_ID: `${JOB_HOST_PREFIX}${job.id}`,
      MNT: p.mountpoint(agent),
      PORT: String(rec.port),
      SSH_KEY: p.sshKey,
      KNOWN_HOSTS: await dir.file('known_hosts', `borgpull-agent-${agent} ${id.sshHostKey}\n`),
      HOST_ALIAS: `borgpull-agent-${agent}`,
      PASSPHRASE_FILE: p.passphrase(agent),
      REPO: p.repo(agent),
      JOB_DIR: dir.path,
      CLIENT_PASSWD: await dir.file('passwd', id.passwd, 0o644),
      CLIENT_GROUP: await dir.file('group', id.group, 0o644),
      NSSWITCH: await dir.file('nsswitch.conf', NSSWITCH, 0o644),
    });
    dir.expect('sshfs.err');
    if (isolation === 'chroot') {
      await dir.dir('upper');
      await dir.dir('stage');
    }

    await ensureRepo(p, agent);
    if (await breakStaleJobLock(p, agent, (jobId) => ctx.running.has(jobId))) log.warn('broke a lock left by a dead job');
    await ensureMountpoint(p.mountpoint(agent));
    cleanup.push(['remove the mountpoint', () => removeMountpoint(p.mountpoint(agent))]);

    const archive = archiveName(agent);
    job.archive = archive;
    env['ARCHIVE'] = archive;
    const excludes = [...mountExcludes(parseMounts(id.mounts)), ...config.exclude, ...(settings?.exclude ?? [])];
    const args = excludes.flatMap((x) => ['--exclude', x]);
    say({ phase: 'borg', message: `${isolation} isolation, ${excludes.length} excludes` });
    const { file, args: argv } = jobCommand(isolation === 'chroot' ? CHROOT_CREATE : NAMESPACE_CREATE, args);
    let last = 0;
    const reader = new BorgLogReader((pr) => {
      const now = Date.now();
      if (now - last < 250) return;
      last = now;
      say({ phase: 'borg', ...pr });
    });
    const proc = execa(file, argv, {
      env,
      extendEnv: false,
      stdin: 'ignore',
      reject: false,
      cancelSignal: signal,
      forceKillAfterDelay: 3000,
      stripFinalNewline: false,
    });
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (c: string) => reader.push(c));
    // The tunnel dying mid-job is one more sign the archive is cut short.
    let tunnelLost: string | undefined;
    const offTunnel = link.onMessage((m) => {
      if (m.type === 'tunnel.closed') tunnelLost = m.reason;
    });
    const offClose = link.onClose((reason) => {
      tunnelLost ??= `agent disconnected: ${reason}`;
    });
    const res = await proc;
    offTunnel();
    offClose();
    reader.push('\n');
    const out = reader.outcome;
    if (signal.aborted) throw new ControllerError('E_JOB_CANCELLED', `the job was cancelled: ${String((signal.reason as Error)?.message ?? signal.reason)}`);
    if (out.setupError) throw new ControllerError(out.setupError.code, out.setupError.message);
    const lost =
      out.connection === false || tunnelLost !== undefined || out.errors.some((e) => LOST.test(e)) || out.warnings.some((e) => LOST.test(e));
    if (out.rc === null) {
      throw new ControllerError('E_JOB_ABORTED', `the backup process ended before borg reported (exit ${res.exitCode ?? res.signal})`);
    }
    if (lost) {
      const names = await listArchives(p, agent).catch(() => []);
      if (names.some((a) => a.name === archive)) {
        await deleteArchive(p, agent, archive);
        log.warn({ archive }, 'deleted the archive of a backup cut short');
      }
      job.archive = undefined;
      throw new ControllerError(
        'E_JOB_CONNECTION_LOST',
        `the connection to the client was lost during the backup${tunnelLost ? ` (${tunnelLost})` : ''}; its partial archive was deleted`,
      );
    }
    const stats = parseStats(String(res.stdout ?? ''));
    job.stats = { ...stats, changedFiles: out.changedFiles, errorFiles: out.errorFiles };
    if (out.rc === 0) job.status = 'succeeded';
    else if (out.rc === 1) {
      job.status = 'warning';
      job.reason = out.warnings.slice(0, 3).join('; ') || 'borg reported warnings';
    } else {
      throw new ControllerError('E_JOB_BORG', `borg create failed (exit ${out.rc}): ${out.errors.slice(-3).join('; ') || 'no message'}`);
    }
  } catch (err) {
    job.status = 'failed';
    job.code = err instanceof BorgpullError ? err.code : 'E_JOB_INTERNAL';
    job.reason = err instanceof Error ? err.message : String(err);
    if (job.code === 'E_JOB_INTERNAL') log.error({ err }, 'backup failed');
  } finally {
    say({ phase: 'cleanup' });
    for (const [what, step] of cleanup.reverse()) {
      try {
        await step();
      } catch (err) {
        log.warn({ step: what, reason: (err as Error).message }, 'cleanup step failed');
      }
    }
    ctx.running.delete(job.id);
  }
  job.endedAt = Date.now();
  await store.update(job);
  log.info({ status: job.status, code: job.code, archive: job.archive }, 'backup finished');
  say({ phase: 'done', message: job.status });
  return job;
}

function parseStats(stdout: string): JobRecord['stats'] {
  try {
    const j = JSON.parse(stdout) as { archive?: { stats?: Record<string, number> } };
    const s = j.archive?.stats ?? {};
    return {
      nfiles: s['nfiles'],
      originalSize: s['original_size'],
      compressedSize: s['compressed_size'],
      deduplicatedSize: s['deduplicated_size'],
    };
  } catch {
    return {};
  }
}
