import type { Logger } from 'pino';
import { BorgpullError, errorMessage, escapeControl, isCodeOf } from '@borgpull/protocol';
import type { AgentLink } from '../agent-link.js';
import type { ControllerConfig, Isolation } from '../config.js';
import { CONTROLLER_CODES, ControllerError } from '../errors.js';
import { applyQuota, breakStaleJobLock, discardArchive, ensureRepo } from './borg.js';
import { runCleanup, type Cleanup } from './cleanup.js';
import { openClientAccess, type ClientAccess } from './client-access.js';
import type { JobContext } from './job-context.js';
import type { JobEvent } from './job-event.js';
import { runJobScript } from './job-script/launcher.js';
import type { BorgOutcome } from './job-script/output.js';
import { BACKUP_MOUNT_OPTS, CHROOT_CREATE, NAMESPACE_CREATE } from './job-script/script.js';
import { markFailed, newJobId, type JobRecord } from './job-store.js';
import { checkFreeSpace, jobLimits, quotaError, QuotaWatchingReader, TimeLimit, type JobLimits } from './limits.js';

/** Archive names: AGENT-YYYY-MM-DDTHH:MM:SS (UTC). */
export function archiveName(agent: string, at = new Date()): string {
  return `${agent}-${at.toISOString().slice(0, 19)}`;
}

type Say = (e: Omit<JobEvent, 'agent' | 'jobId'>) => void;

/**
 * One pulled backup, top to bottom: the agent's link, the job's limits, client
 * access (tunnel, checked host report, job dir, mountpoint), the repository, the
 * job script (sshfs + borg in a private namespace), the verdict; on failure
 * its archive is discarded; cleanup runs whatever happened; the job record
 * says what really happened.
 */
export async function runBackup(ctx: JobContext, agent: string, emit: (e: JobEvent) => void, cancel: AbortSignal): Promise<JobRecord> {
  const job: JobRecord = { id: newJobId(), kind: 'backup', agent, startedAt: Date.now(), status: 'running', trigger: ctx.trigger };
  const log = ctx.log.child({ agentId: agent, jobId: job.id });
  const say: Say = (e) => emit({ agent, jobId: job.id, ...e });

  // 1. The agent must be connected; if not, the record says so and nothing else happens.
  const link = linkOrRecord(ctx, job);
  if (!link) {
    await ctx.store.add(job);
    return job;
  }
  await ctx.store.add(job);
  ctx.running.add(job.id);
  log.info('backup started');
  const cleanup: Cleanup = [];
  let limit: TimeLimit | undefined;
  try {
    // 2. Settings and limits, read at every job so that edits apply without a restart.
    const config = await ctx.config();
    const limits = jobLimits(config, agent);
    limit = new TimeLimit(cancel, limits.timeLimit, limits.timeLimitKey);
    // A job that waited for its turn while the daemon began to stop ends here, before any tunnel opens.
    limit.signal.throwIfAborted();
    await checkFreeSpace(ctx.paths.reposDir, config.minFreeSpace);
    const isolation: Isolation = config.agents[agent]?.isolation ?? config.isolation;
    if (isolation === 'chroot') log.warn('chroot isolation: the client runs its own borg as root on this server');

    // 3. Client access: each step pushes its undo onto `cleanup`.
    say({ phase: 'tunnel' });
    const access = await openAccess(ctx, config, link, job, cleanup, isolation, log);
    limit.signal.throwIfAborted();

    // 4. The repository: created on first use, a dead job's lock broken, the quota applied.
    await prepareRepo(ctx, agent, limits, log);

    // 5. The job script: sshfs + borg create, in its own mount and PID namespace.
    job.archive = archiveName(agent);
    const run = await runCreate(agent, config, link, access, job.archive, isolation, limit.signal, say);

    // 6. The verdict, from the script's result line, never from borg's exit status alone.
    judge(job, run, limits, limit.signal);
  } catch (err) {
    if (markFailed(job, limit?.explain(err) ?? err)) log.error({ err }, 'backup failed');
    await discardFailed(ctx, job, log);
  } finally {
    // 7. Cleanup, in reverse, whatever happened.
    limit?.dispose();
    say({ phase: 'cleanup' });
    await runCleanup(cleanup, (step, reason) => log.warn({ step, reason }, 'cleanup step failed'));
    ctx.running.delete(job.id);
  }
  job.endedAt = Date.now();
  await ctx.store.update(job);
  log.info({ status: job.status, code: job.code, archive: job.archive }, 'backup finished');
  say({ phase: 'done', message: job.status });
  return job;
}

/** The agent's live link; or undefined with the job recorded as offline (or failed: unknown, revoked). */
function linkOrRecord(ctx: JobContext, job: JobRecord): AgentLink | undefined {
  try {
    return ctx.link(job.agent);
  } catch (err) {
    const code = err instanceof BorgpullError ? err.code : 'E_JOB_INTERNAL';
    job.status = code === 'E_AGENT_OFFLINE' ? 'offline' : 'failed';
    job.code = code;
    job.reason = errorMessage(err);
    job.endedAt = Date.now();
    return undefined;
  }
}

async function openAccess(
  ctx: JobContext,
  config: ControllerConfig,
  link: AgentLink,
  job: JobRecord,
  cleanup: Cleanup,
  isolation: Isolation,
  log: Logger,
): Promise<ClientAccess> {
  const rec = ctx.agent(job.agent);
  if (!rec) throw new ControllerError('E_AGENT_UNKNOWN', `no agent named '${job.agent}' (see 'controller agents')`);
  const access = await openClientAccess({
    p: ctx.paths,
    config,
    link,
    agent: rec,
    jobId: job.id,
    cleanup,
    mountOpts: BACKUP_MOUNT_OPTS,
  });
  const id = access.host;
  log.info({ hostname: id.hostname, users: id.users, groups: id.groups, mountExcludes: id.mountExcludes.length }, 'host report checked');
  if (isolation === 'chroot') {
    await access.dir.dir('upper');
    await access.dir.dir('stage');
  }
  return access;
}

async function prepareRepo(ctx: JobContext, agent: string, limits: JobLimits, log: Logger): Promise<void> {
  await ensureRepo(ctx.paths, agent);
  if (await breakStaleJobLock(ctx.paths, agent, (jobId) => ctx.running.has(jobId))) log.warn('broke a lock left by a dead job');
  if (await applyQuota(ctx.paths, agent, limits.quota)) log.info({ quota: limits.quota }, 'set the repository quota');
}

interface CreateRun {
  readonly outcome: BorgOutcome;
  readonly stdout: string;
  readonly exit: string;
  readonly quotaExceeded: boolean;
  /** Why the tunnel or the agent's connection went away during the run, escaped. */
  readonly tunnelLost: string | undefined;
}

async function runCreate(
  agent: string,
  config: ControllerConfig,
  link: AgentLink,
  access: ClientAccess,
  archive: string,
  isolation: Isolation,
  signal: AbortSignal,
  say: Say,
): Promise<CreateRun> {
  const env = { ...access.env, ARCHIVE: archive };
  const excludes = [...access.host.mountExcludes, ...config.exclude, ...(config.agents[agent]?.exclude ?? [])];
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
  try {
    const res = await runJobScript({ script: isolation === 'chroot' ? CHROOT_CREATE : NAMESPACE_CREATE, args, env, signal, reader });
    return { ...res, quotaExceeded: reader.quotaExceeded, tunnelLost };
  } finally {
    offTunnel();
    offClose();
  }
}

/** Sets the job's status from the script's run; throws for every way it failed. */
function judge(job: JobRecord, run: CreateRun, limits: JobLimits, signal: AbortSignal): void {
  const out = run.outcome;
  if (signal.aborted) {
    const why: unknown = signal.reason;
    throw new ControllerError('E_JOB_CANCELLED', `the job was cancelled: ${errorMessage(why)}`);
  }
  if (out.setupError) {
    // A line the job script wrote; only our own codes pass, anything else is a setup failure.
    const { code, message } = out.setupError;
    throw new ControllerError(isCodeOf(CONTROLLER_CODES, code) ? code : 'E_JOB_SETUP', message);
  }
  if (run.quotaExceeded) throw quotaError(limits);
  if (out.rc === null) {
    throw new ControllerError('E_JOB_ABORTED', `the backup process ended before borg reported (exit ${run.exit})`);
  }
  // The job script checks the mount after borg (sshfs alive, mount answering):
  // borg's own exit status and messages do not tell a lost client reliably.
  if (out.connection === false || run.tunnelLost !== undefined) {
    throw new ControllerError(
      'E_JOB_CONNECTION_LOST',
      `the connection to the client was lost during the backup${run.tunnelLost ? ` (${run.tunnelLost})` : ''}`,
    );
  }
  job.stats = { ...parseStats(run.stdout), changedFiles: out.changedFiles, errorFiles: out.errorFiles };
  if (out.rc === 0) job.status = 'succeeded';
  else if (out.rc === 1) {
    job.status = 'warning';
    job.reason = out.warnings.slice(0, 3).join('; ') || 'borg reported warnings';
  } else {
    throw new ControllerError('E_JOB_BORG', `borg create failed (exit ${out.rc}): ${out.errors.slice(-3).join('; ') || 'no message'}`);
  }
}

/** Whatever borg committed for a failed run is not a good backup: remove it (and its checkpoint). */
async function discardFailed(ctx: JobContext, job: JobRecord, log: Logger): Promise<void> {
  if (job.archive === undefined) return;
  try {
    // This job's borg is dead by now: a lock it left may be broken.
    await breakStaleJobLock(ctx.paths, job.agent, (id) => id !== job.id && ctx.running.has(id));
    const gone = await discardArchive(ctx.paths, job.agent, job.archive);
    if (gone.length) {
      job.reason = `${job.reason ?? ''}; the partial archive was deleted`;
      log.warn({ archives: gone }, 'deleted the archive of a failed backup');
    }
    job.archive = undefined;
  } catch (e) {
    job.reason = `${job.reason ?? ''}; its archive ${job.archive} could not be deleted (${errorMessage(e)}): delete it by hand`;
  }
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
