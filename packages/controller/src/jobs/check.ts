/**
 * The check job: `borg check` of an agent's repository, recorded like a
 * backup (kind 'check'). It needs no client: the repository is local.
 *
 * Two borg runs, because borg 1.2 has no cheaper data sample:
 * 1. `--repository-only --max-duration S`: reads every object of as many
 *    segments as fit in S seconds and checks each one's size and CRC (bit rot,
 *    a truncated or overwritten segment). borg remembers where it stopped and
 *    the next check goes on from there, so successive checks read the whole
 *    repository, S seconds at a time.
 * 2. `--archives-only --last N` over this controller's archives: the manifest
 *    and the newest N archives' metadata are decrypted and authenticated, and
 *    every chunk they reference must be in the repository.
 * `--verify-data` (checks.verifyData) adds a cryptographic check of every
 * chunk: in borg 1.2 it reads all of the repository whatever `--last` says
 * (ArchiveChecker.verify_data scans every object), so it is off by default.
 */
import { ControllerError } from '../errors.js';
import { breakStaleJobLock } from './borg.js';
import { errorText, hasRepo, LOCK_WAIT, maintenanceBorg, metDamage, type MaintenanceRun } from './borg-maintenance.js';
import type { CheckSettings } from './check-settings.js';
import type { JobContext } from './job-context.js';
import { markFailed, newJobId, type JobRecord, type JobTrigger } from './job-store.js';
import { jobLimits, TimeLimit } from './limits.js';
import { archiveGlob } from './retention.js';

/** The borg check runs of one check job, each an argv after `borg`. */
export function checkRuns(repo: string, agent: string, s: CheckSettings): string[][] {
  return [
    ['check', '--lock-wait', LOCK_WAIT, '--repository-only', `--max-duration=${s.maxDuration}`, '--', repo],
    [
      'check',
      '--lock-wait',
      LOCK_WAIT,
      '--archives-only',
      `--glob-archives=${archiveGlob(agent)}`,
      `--last=${s.lastArchives}`,
      ...(s.verifyData ? ['--verify-data'] : []),
      '--',
      repo,
    ],
  ];
}

/** Runs the check job for `agent`; a damaged repository is a failed job (E_CHECK_FAILED) with borg's own words. */
export async function runCheck(ctx: JobContext, agent: string, trigger: JobTrigger, cancel: AbortSignal): Promise<JobRecord> {
  const job: JobRecord = { id: newJobId(), kind: 'check', agent, startedAt: Date.now(), status: 'running', trigger };
  const log = ctx.log.child({ agentId: agent, jobId: job.id });
  await ctx.store.add(job);
  ctx.running.add(job.id);
  let limit: TimeLimit | undefined;
  try {
    const config = await ctx.config();
    const settings = config.agents[agent]?.checks ?? config.checks;
    const limits = jobLimits(config, agent);
    limit = new TimeLimit(cancel, limits.timeLimit, limits.timeLimitKey);
    if (!(await hasRepo(ctx.paths, agent))) {
      // Not a damaged repository: a client never backed up yet. Its backups say why.
      job.status = 'warning';
      job.code = 'E_CHECK_NO_REPO';
      job.reason = 'no repository yet: nothing to check';
    } else {
      await breakStaleJobLock(ctx.paths, agent, (id) => ctx.running.has(id));
      const problems: string[] = [];
      for (const args of checkRuns(ctx.paths.repo(agent), agent, settings)) {
        const run: MaintenanceRun = await maintenanceBorg(ctx.paths, agent, job.id, args, limit.signal);
        if (run.rc === 0) continue;
        // borg 1.2 check: 1 means it found problems. 2 is an error: damaged
        // data it tripped over (a crash on a bad CRC) is a finding like any
        // other; anything else (a lock it could not get) says nothing of the
        // repository, and fails the job as borg's error.
        if (run.rc === 1 || metDamage(run)) problems.push(errorText(run, 5) || `problems found (borg exit ${run.rc ?? 'signal'})`);
        else if (problems.length === 0) {
          throw new ControllerError('E_JOB_BORG', `borg check failed (exit ${run.rc ?? 'signal'}): ${errorText(run) || 'no message'}`);
        } else problems.push(`then borg check stopped (exit ${run.rc ?? 'signal'}): ${errorText(run) || 'no message'}`);
      }
      if (problems.length) {
        throw new ControllerError('E_CHECK_FAILED', `borg check found problems in the repository: ${problems.join('; ')}`);
      }
      job.status = 'succeeded';
    }
  } catch (err) {
    if (markFailed(job, limit?.explain(err) ?? err)) log.error({ err }, 'check failed');
  } finally {
    limit?.dispose();
    ctx.running.delete(job.id);
  }
  job.endedAt = Date.now();
  await ctx.store.update(job);
  log.info({ status: job.status, code: job.code }, 'check finished');
  return job;
}
