import { escapeControl } from '@borgpull/protocol';
import { ControllerError } from '../errors.js';
import { borg } from './borg.js';
import { jobLimits, TimeLimit } from './limits.js';
import type { JobContext } from './job-context.js';
import { markFailed, newJobId, type JobRecord } from './job-store.js';
import type { JobEvent } from './job-event.js';
import { streamExportTar } from './restore-stream.js';

export type RestoreMethod = 'stream' | 'extract' | 'full';

/** A restore as the admin API reads it (admin/api.ts). */
export interface RestoreRequest {
  readonly agent: string;
  readonly archive: string;
  readonly paths: readonly string[];
  readonly method: RestoreMethod;
  readonly target: string;
  readonly dryRun: boolean;
}

const MAX_LISTED = 100_000;

/** Lists what a restore would write (dry run): the archive's items under the given paths. */
async function dryRun(ctx: JobContext, req: RestoreRequest): Promise<string[]> {
  const p = ctx.paths;
  // `--`: a PATH such as `--format=...` is a path, never an option.
  const res = await borg(p, req.agent, ['list', '--format', '{path}{NUL}', '--', `${p.repo(req.agent)}::${req.archive}`, ...req.paths]);
  if (res.exitCode !== 0)
    throw new ControllerError('E_JOB_BORG', `cannot list ${req.archive}: ${escapeControl(res.stderr.trim().split('\n').pop() ?? '')}`);
  // Archived paths are the client's file names: escaped before the CLI prints them.
  return res.stdout.split('\0').filter(Boolean).slice(0, MAX_LISTED).map(escapeControl);
}

async function archiveSize(ctx: JobContext, req: RestoreRequest): Promise<number | undefined> {
  const p = ctx.paths;
  const res = await borg(p, req.agent, ['info', '--json', '--', `${p.repo(req.agent)}::${req.archive}`]);
  if (res.exitCode !== 0) {
    throw new ControllerError(
      'E_RESTORE_ARCHIVE',
      `no archive '${req.archive}' for '${req.agent}' (see 'controller archives ${req.agent}')`,
    );
  }
  const info = JSON.parse(res.stdout) as { archives?: Array<{ stats?: { original_size?: number } }> };
  return info.archives?.[0]?.stats?.original_size;
}

/**
 * One restore. Every method streams `borg export-tar` over the agent's session
 * into its own `tar -x`: nothing is written through sshfs (see the README on
 * why), and the client never grants the server write access. The methods
 * differ in how owners are set: `extract` maps archived names through the
 * client's passwd and group of today, `stream` and `full` keep archived ids.
 */
export async function runRestore(
  ctx: JobContext,
  req: RestoreRequest,
  emit: (e: JobEvent) => void,
  cancel: AbortSignal,
): Promise<JobRecord & { wouldWrite?: string[] }> {
  const { store } = ctx;
  const p = ctx.paths;
  const link = ctx.link(req.agent);
  const limits = jobLimits(await ctx.config(), req.agent);
  const totalBytes = await archiveSize(ctx, req);
  if (req.dryRun) {
    const list = await dryRun(ctx, req);
    return {
      id: 'dry-run',
      kind: 'restore',
      agent: req.agent,
      archive: req.archive,
      method: req.method,
      target: req.target,
      startedAt: Date.now(),
      endedAt: Date.now(),
      status: 'succeeded',
      wouldWrite: list,
    };
  }
  const job: JobRecord = {
    id: newJobId(),
    kind: 'restore',
    agent: req.agent,
    archive: req.archive,
    method: req.method,
    target: req.target,
    startedAt: Date.now(),
    status: 'running',
    trigger: ctx.trigger,
  };
  const log = ctx.log.child({ agentId: req.agent, jobId: job.id });
  const say = (e: Omit<JobEvent, 'agent' | 'jobId'>): void => emit({ agent: req.agent, jobId: job.id, ...e });
  await store.add(job);
  ctx.running.add(job.id);
  log.info({ method: req.method, archive: req.archive, target: req.target }, 'restore started');
  const limit = new TimeLimit(cancel, limits.timeLimit, limits.timeLimitKey);
  try {
    let last = 0;
    // The race also ends a wait for the agent's answer that takes no signal.
    const r = await limit.race(
      streamExportTar({
        p,
        agent: req.agent,
        link,
        archive: req.archive,
        paths: req.paths,
        target: req.target,
        // extract maps archived names to the client's ids of today; stream and full keep the archived ids.
        owners: req.method === 'extract' ? 'names' : 'numeric',
        totalBytes,
        signal: limit.signal,
        onProgress: (bytes) => {
          const now = Date.now();
          if (now - last < 250) return;
          last = now;
          say({ phase: 'restore', bytes, totalBytes });
        },
      }),
    );
    job.stats = { bytes: r.bytes, files: r.files, sha256: r.sha256 };
    job.status = 'succeeded';
  } catch (err) {
    if (markFailed(job, limit.explain(err))) log.error({ err }, 'restore failed');
  } finally {
    limit.dispose();
    ctx.running.delete(job.id);
  }
  job.endedAt = Date.now();
  await store.update(job);
  log.info({ status: job.status, code: job.code }, 'restore finished');
  say({ phase: 'done', message: job.status });
  return job;
}
