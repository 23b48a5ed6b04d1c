import type { Logger } from 'pino';
import { BorgpullError, errorMessage, escapeControl, isCodeOf } from '@borgpull/protocol';
import type { ControllerDaemon } from '../daemon.js';
import { CONTROLLER_CODES, ControllerError } from '../errors.js';
import { applyQuota, breakStaleJobLock, discardArchive, ensureRepo } from './borg.js';
import { openClientAccess, runCleanup, runJobScript, type Cleanup } from './client-access.js';
import { markFailed, newJobId, type JobRecord, type JobStore } from './job-store.js';
import { checkFreeSpace, jobLimits, quotaError, QuotaWatchingReader, TimeLimit } from './limits.js';
import type { JobEvent } from './progress.js';
import { BACKUP_MOUNT_OPTS, CHROOT_CREATE, NAMESPACE_CREATE } from './scripts.js';
import { loadConfig, type Isolation } from '../config.js';

/** Archive names: AGENT-YYYY-MM-DDTHH:MM:SS (UTC). */
export function archiveName(agent: string, at = new Date()): string {
  return `${agent}-${at.toISOString().slice(0, 19)}`;
}

export interface BackupContext {
  readonly daemon: ControllerDaemon;
  readonly store: JobStore;
  readonly log: Logger;
  readonly running: Set<string>;
}

/**
 * One pulled backup: tunnel, host report, sshfs + borg in a private namespace,
 * cleanup whatever happened, a truthful job record.
 */
export async function runBackup(ctx: BackupContext, agent: string, emit: (e: JobEvent) => void, cancel: AbortSignal): Promise<JobRecord> {
  const { daemon, store } = ctx;
  const p = daemon.paths;
  const job: JobRecord = { id: newJobId(), kind: 'backup', agent, startedAt: Date.now(), status: 'running' };
  const log = ctx.log.child({ agentId: agent, jobId: job.id });
  const say = (e: Omit<JobEvent, 'agent' | 'jobId'>): void => emit({ agent, jobId: job.id, ...e });
  let link;
  try {
    link = daemon.link(agent);
  } catch (err) {
    const code = err instanceof BorgpullError ? err.code : undefined;
    job.status = code === 'E_AGENT_OFFLINE' ? 'offline' : 'failed';
    job.code = code;
    job.reason = errorMessage(err);
    job.endedAt = Date.now();
    await store.add(job);
    return job;
  }
  await store.add(job);
  ctx.running.add(job.id);
  log.info('backup started');
  const cleanup: Cleanup = [];
  const rec = daemon.registry.get(agent)!;
  let limit: TimeLimit | undefined;
  try {
    // Read at every job, so edits to excludes, isolation or limits apply without a restart.
    const config = await loadConfig(p.root);
    const limits = jobLimits(config, agent);
    limit = new TimeLimit(cancel, limits.timeLimit, limits.timeLimitKey);
    const signal = limit.signal;
    await checkFreeSpace(p.reposDir, config.minFreeSpace);
    const settings = config.agents[agent];
    const isolation: Isolation = settings?.isolation ?? config.isolation;
    if (isolation === 'chroot') log.warn('chroot isolation: the client runs its own borg as root on this server');
    say({ phase: 'tunnel' });
    const access = await openClientAccess({
      p,
      config,
      link,
      agent: rec,
      jobId: job.id,
      cleanup,
      sshKey: p.sshKey,
      mountOpts: BACKUP_MOUNT_OPTS,
      remotePath: '/',
    });
    const { env, dir, host: id } = access;
    log.info({ hostname: id.hostname, users: id.users, groups: id.groups, mountExcludes: id.mountExcludes.length }, 'host report checked');
    if (isolation === 'chroot') {
      await dir.dir('upper');
      await dir.dir('stage');
    }
    signal.throwIfAborted();

    await ensureRepo(p, agent);
    if (await breakStaleJobLock(p, agent, (jobId) => ctx.running.has(jobId))) log.warn('broke a lock left by a dead job');
    if (await applyQuota(p, agent, limits.quota)) log.info({ quota: limits.quota }, 'set the repository quota');

    const archive = archiveName(agent);
    job.archive = archive;
    env['ARCHIVE'] = archive;
    const excludes = [...id.mountExcludes, ...config.exclude, ...(settings?.exclude ?? [])];
    // `--exclude=X` in one word: a pattern starting with '-' is still a pattern.
    const args = excludes.map((x) => `--exclude=${x}`);
    say({ phase: 'borg', message: `${isolation} isolation, ${excludes.length} excludes` });
    let last = 0;
    const reader = new QuotaWatchingReader((pr) => {
      const now = Date.now();
      if (now - last < 250) return;
      last = now;
      say({ phase: 'borg', ...pr });
    });
    // The tunnel dying mid-job is one more sign the archive is cut short.
    let tunnelLost: string | undefined;
    const offTunnel = link.onMessage((m) => {
      // The agent's words (ssh's stderr, say): escaped before they reach a record or a terminal.
      if (m.type === 'tunnel.closed') tunnelLost = escapeControl(m.reason);
    });
    const offClose = link.onClose((reason) => {
      tunnelLost ??= `agent disconnected: ${escapeControl(reason)}`;
    });
    const res = await runJobScript({ script: isolation === 'chroot' ? CHROOT_CREATE : NAMESPACE_CREATE, args, env, signal, reader }).finally(() => {
      offTunnel();
      offClose();
    });
    const out = reader.outcome;
    if (signal.aborted) throw new ControllerError('E_JOB_CANCELLED', `the job was cancelled: ${errorMessage(signal.reason)}`);
    if (out.setupError) {
      // A line the job script wrote; only our own codes pass, anything else is a setup failure.
      const { code, message } = out.setupError;
      throw new ControllerError(isCodeOf(CONTROLLER_CODES, code) ? code : 'E_JOB_SETUP', message);
    }
    if (reader.quotaExceeded) throw quotaError(limits);
    // The job script checks the mount after borg (sshfs alive, mount answering):
    // borg's own exit status and messages do not tell a lost client reliably.
    const lost = out.connection === false || tunnelLost !== undefined;
    if (out.rc === null) {
      throw new ControllerError('E_JOB_ABORTED', `the backup process ended before borg reported (exit ${res.exit})`);
    }
    if (lost) {
      throw new ControllerError(
        'E_JOB_CONNECTION_LOST',
        `the connection to the client was lost during the backup${tunnelLost ? ` (${tunnelLost})` : ''}`,
      );
    }
    const stats = parseStats(res.stdout);
    job.stats = { ...stats, changedFiles: out.changedFiles, errorFiles: out.errorFiles };
    if (out.rc === 0) job.status = 'succeeded';
    else if (out.rc === 1) {
      job.status = 'warning';
      job.reason = out.warnings.slice(0, 3).join('; ') || 'borg reported warnings';
    } else {
      throw new ControllerError('E_JOB_BORG', `borg create failed (exit ${out.rc}): ${out.errors.slice(-3).join('; ') || 'no message'}`);
    }
  } catch (err) {
    if (markFailed(job, limit?.explain(err) ?? err)) log.error({ err }, 'backup failed');
    // Whatever borg committed for a failed run is not a good backup: remove it.
    if (job.archive !== undefined) {
      try {
        // This job's borg is dead by now: a lock it left may be broken.
        await breakStaleJobLock(p, agent, (id) => id !== job.id && ctx.running.has(id));
        const gone = await discardArchive(p, agent, job.archive);
        if (gone.length) {
          job.reason += `; the partial archive was deleted`;
          log.warn({ archives: gone }, 'deleted the archive of a failed backup');
        }
        job.archive = undefined;
      } catch (e) {
        job.reason += `; its archive ${job.archive} could not be deleted (${errorMessage(e)}): delete it by hand`;
      }
    }
  } finally {
    limit?.dispose();
    say({ phase: 'cleanup' });
    await runCleanup(cleanup, (step, reason) => log.warn({ step, reason }, 'cleanup step failed'));
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
