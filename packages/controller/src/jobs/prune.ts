/**
 * The prune and compact jobs: `borg prune` with the agent's keep rules over
 * the archives this controller made for it, then `borg compact` to give the
 * space back. Each is its own job record. They run inside the hold of the
 * agent that the backup before them had (JobRunner.runJob's follow-up), or
 * as their own job (`controller prune`): never beside another job of the
 * agent's repository.
 */
import type { Logger } from 'pino';
import type { ControllerConfig } from '../config.js';
import { ControllerError } from '../errors.js';
import { breakStaleJobLock } from './borg.js';
import { errorText, hasRepo, LOCK_WAIT, maintenanceBorg, segmentBytes, type BorgLogLine } from './borg-maintenance.js';
import type { JobContext } from './job-context.js';
import { markFailed, newJobId, type JobRecord, type JobTrigger } from './job-store.js';
import { jobLimits, TimeLimit } from './limits.js';
import { archiveGlob, freezeReason, keepArgs, retentionOf, type KeepRules } from './retention.js';

/** One archive in borg prune's `--list`: kept (and by which rule) or pruned. */
export interface PruneLine {
  readonly archive: string;
  /** As borg prints it, in the controller's time zone. */
  readonly time: string;
  readonly action: 'keep' | 'prune';
  /** e.g. "daily #2", "within #1", "checkpoint". */
  readonly rule?: string;
}

/** What a prune did, or (dry run) would do. */
export interface PruneResult {
  readonly agent: string;
  /** borg prune's keep arguments. */
  readonly rules: readonly string[];
  /** Why nothing is pruned now (the pruning freeze), if so. */
  readonly frozen?: string;
  readonly archives: readonly PruneLine[];
  /** The prune job (not for a dry run). */
  readonly prune?: JobRecord;
  /** The compact job that followed, if the prune deleted anything. */
  readonly compact?: JobRecord;
}

const LIST_RE =
  /^(Would prune:|Pruning archive \(\d+\/\d+\):|Keeping checkpoint archive:|Keeping archive \(rule: ([a-z]+) #(\d+)\):)\s+(\S+)\s+(.*?)\s*\[[0-9a-f]{64}\]$/;

/** borg prune's `--list` lines (borg.output.list) as keep/prune rows, in borg's order (newest first). */
export function parsePruneList(log: readonly BorgLogLine[]): PruneLine[] {
  const out: PruneLine[] = [];
  for (const l of log) {
    if (l.name !== 'borg.output.list') continue;
    const m = LIST_RE.exec(l.message);
    if (!m) continue;
    const [, head = '', rule, num, archive = '', time = ''] = m;
    const keep = head.startsWith('Keeping');
    out.push({
      archive,
      time,
      action: keep ? 'keep' : 'prune',
      ...(keep ? { rule: rule === undefined ? 'checkpoint' : `${rule} #${num ?? ''}` } : {}),
    });
  }
  return out;
}

/** The agent's keep rules, or E_RETENTION_OFF: pruning only ever does what the operator asked for. */
export function rulesFor(config: ControllerConfig, agent: string): KeepRules {
  const r = retentionOf(config, agent);
  if (r === 'off') {
    throw new ControllerError(
      'E_RETENTION_OFF',
      `retention is off for '${agent}': set "retention" (or agents.${agent}.retention) in config.json to prune`,
    );
  }
  return r;
}

/** The pruning freeze, from the agent's newest backups in the history. */
function frozenBecause(ctx: JobContext, agent: string): string | undefined {
  return freezeReason(ctx.store.query({ limit: 2, agent, kind: 'backup', status: ['succeeded', 'warning', 'failed', 'offline'] }));
}

function pruneArgs(ctx: JobContext, agent: string, rules: KeepRules, dryRun: boolean): string[] {
  return [
    'prune',
    '--list',
    ...(dryRun ? ['--dry-run'] : []),
    '--lock-wait',
    LOCK_WAIT,
    `--glob-archives=${archiveGlob(agent)}`,
    ...keepArgs(rules),
    '--',
    ctx.paths.repo(agent),
  ];
}

/** `controller prune NAME --dry-run`: what a prune would keep and delete now, and whether the freeze stops it. No job record. */
export async function planPrune(ctx: JobContext, agent: string, signal: AbortSignal): Promise<PruneResult> {
  const config = await ctx.config();
  const rules = rulesFor(config, agent);
  const frozen = frozenBecause(ctx, agent);
  const base = { agent, rules: keepArgs(rules), ...(frozen === undefined ? {} : { frozen }) };
  if (!(await hasRepo(ctx.paths, agent))) return { ...base, archives: [] };
  await breakStaleJobLock(ctx.paths, agent, (id) => ctx.running.has(id));
  const id = newJobId();
  ctx.running.add(id);
  let run;
  try {
    run = await maintenanceBorg(ctx.paths, agent, id, pruneArgs(ctx, agent, rules, true), signal);
  } finally {
    ctx.running.delete(id);
  }
  if (run.rc !== 0)
    throw new ControllerError('E_JOB_BORG', `borg prune --dry-run failed (exit ${run.rc ?? 'signal'}): ${errorText(run) || 'no message'}`);
  return { ...base, archives: parsePruneList(run.log) };
}

/**
 * A prune (and the compact after it) as jobs: recorded with `trigger`, never
 * throwing for what borg did (the record says it). Skipped, and recorded as
 * skipped (status warning, E_PRUNE_FROZEN), while the agent is frozen.
 */
export async function runPrune(ctx: JobContext, agent: string, trigger: JobTrigger, cancel: AbortSignal): Promise<PruneResult> {
  const config = await ctx.config();
  const rules = rulesFor(config, agent);
  const job: JobRecord = { id: newJobId(), kind: 'prune', agent, startedAt: Date.now(), status: 'running', trigger };
  const log = ctx.log.child({ agentId: agent, jobId: job.id });
  await ctx.store.add(job);
  ctx.running.add(job.id);
  const frozen = frozenBecause(ctx, agent);
  const base = { agent, rules: keepArgs(rules), ...(frozen === undefined ? {} : { frozen }) };
  let archives: PruneLine[] = [];
  const limits = jobLimits(config, agent);
  const limit = new TimeLimit(cancel, limits.timeLimit, limits.timeLimitKey);
  try {
    if (frozen !== undefined) {
      job.status = 'warning';
      job.code = 'E_PRUNE_FROZEN';
      job.reason = `skipped: frozen: ${frozen}`;
      log.warn({ reason: frozen }, 'prune skipped: the agent is frozen');
    } else if (!(await hasRepo(ctx.paths, agent))) {
      job.status = 'succeeded';
      job.reason = 'no repository yet: nothing to prune';
      job.stats = { archivesKept: 0, archivesDeleted: 0 };
    } else {
      await breakStaleJobLock(ctx.paths, agent, (id) => ctx.running.has(id));
      const run = await maintenanceBorg(ctx.paths, agent, job.id, pruneArgs(ctx, agent, rules, false), limit.signal);
      archives = parsePruneList(run.log);
      judge(job, run.rc, errorText(run), 'borg prune');
      job.stats = {
        archivesKept: archives.filter((a) => a.action === 'keep').length,
        archivesDeleted: archives.filter((a) => a.action === 'prune').length,
      };
    }
  } catch (err) {
    if (markFailed(job, limit.explain(err))) log.error({ err }, 'prune failed');
  } finally {
    limit.dispose();
    ctx.running.delete(job.id);
  }
  job.endedAt = Date.now();
  await ctx.store.update(job);
  log.info({ status: job.status, code: job.code, ...job.stats }, 'prune finished');
  // Only a prune that deleted something leaves space for compact to give back.
  const deleted = job.stats?.archivesDeleted ?? 0;
  const compact =
    (job.status === 'succeeded' || job.status === 'warning') && deleted > 0
      ? await runCompact(ctx, agent, cancel, limits.timeLimit, limits.timeLimitKey, log)
      : undefined;
  return { ...base, archives, prune: job, ...(compact ? { compact } : {}) };
}

/** `borg compact`: frees the segments prune left sparse; the record says how many bytes of segment files went. */
async function runCompact(
  ctx: JobContext,
  agent: string,
  cancel: AbortSignal,
  seconds: number,
  key: string,
  parentLog: Logger,
): Promise<JobRecord> {
  const job: JobRecord = { id: newJobId(), kind: 'compact', agent, startedAt: Date.now(), status: 'running', trigger: 'follow-up' };
  const log = parentLog.child({ jobId: job.id });
  await ctx.store.add(job);
  ctx.running.add(job.id);
  const limit = new TimeLimit(cancel, seconds, key);
  try {
    const before = await segmentBytes(ctx.paths, agent);
    const run = await maintenanceBorg(
      ctx.paths,
      agent,
      job.id,
      ['compact', '--lock-wait', LOCK_WAIT, '--', ctx.paths.repo(agent)],
      limit.signal,
    );
    judge(job, run.rc, errorText(run), 'borg compact');
    const after = await segmentBytes(ctx.paths, agent);
    job.stats = { freedBytes: Math.max(0, before - after), repositoryBytes: after };
  } catch (err) {
    if (markFailed(job, limit.explain(err))) log.error({ err }, 'compact failed');
  } finally {
    limit.dispose();
    ctx.running.delete(job.id);
  }
  job.endedAt = Date.now();
  await ctx.store.update(job);
  log.info({ status: job.status, code: job.code, ...job.stats }, 'compact finished');
  return job;
}

/** borg 1.2: 0 ok, 1 warning, 2 error, 128+N killed. */
function judge(job: JobRecord, rc: number | null, errors: string, what: string): void {
  if (rc === 0) job.status = 'succeeded';
  else if (rc === 1) {
    job.status = 'warning';
    job.reason = errors || `${what} reported warnings`;
  } else throw new ControllerError('E_JOB_BORG', `${what} failed (exit ${rc ?? 'signal'}): ${errors || 'no message'}`);
}
