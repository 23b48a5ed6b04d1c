/**
 * Every agent's state as `controller status` and the metrics show it: built
 * from the registry, the live connections, the job history, the cached
 * repository facts and (when the scheduler is wired) its next run. Reads no
 * repository: borg runs only inside jobs.
 */
import { ControllerError } from '../errors.js';
import type { ControllerConfig } from '../config.js';
import type { JobRecord, JobStatus, JobStore } from '../jobs/job-store.js';
import type { StatePaths } from '../state.js';
import { healthInput, judge, thresholds, type HealthLevel } from './health.js';
import { readRepoFacts } from './repo-facts.js';

export interface JobSummary {
  readonly jobId: string;
  readonly status: JobStatus;
  readonly code: string | null;
  readonly startedAt: number;
  readonly endedAt: number | null;
}

export interface AgentStatus {
  readonly name: string;
  readonly connected: boolean;
  /** When the last good backup ended (ms), or null: never. */
  readonly lastGoodAt: number | null;
  /** The last good backup's duration and sizes (for the metrics). */
  readonly lastGood: { readonly durationMs: number; readonly originalSize: number | null; readonly deduplicatedSize: number | null } | null;
  /** The newest backup that is not running (an `offline` one included). */
  readonly lastBackup: JobSummary | null;
  readonly lastCheck: JobSummary | null;
  /** The scheduler's next run (ms), or null: none planned, or no scheduler. */
  readonly nextRun: number | null;
  readonly archives: number | null;
  /** Deduplicated, compressed bytes in the repository. */
  readonly repositorySize: number | null;
  /** When archives and repositorySize were gathered (end of the last good backup, prune or compact). */
  readonly factsAt: number | null;
  /** 0 ok, 1 warning, 2 critical (Nagios). */
  readonly level: HealthLevel;
  readonly overdue: boolean;
  readonly problems: string[];
  /** The thresholds applied (seconds; null: not judged by age). */
  readonly warnAfter: number | null;
  readonly overdueAfter: number | null;
}

export interface StatusDeps {
  readonly paths: StatePaths;
  readonly agents: () => ReadonlyArray<{ readonly name: string; readonly enrolledAt: number; readonly revokedAt?: number }>;
  readonly connected: (name: string) => boolean;
  readonly store: Pick<JobStore, 'latest'>;
  readonly config: () => Pick<ControllerConfig, 'status'>;
  /** slice `sched`: scheduler.nextRun(agent) */
  readonly nextRun?: (agent: string) => number | null;
  /** The schedule's maxAge for an agent, in seconds (as thresholds() reads it: undefined, the defaults). */
  readonly maxAge?: (agent: string) => number | null | undefined;
  readonly now?: () => number;
}

function summary(j: JobRecord | undefined): JobSummary | null {
  if (!j) return null;
  return { jobId: j.id, status: j.status, code: j.code ?? null, startedAt: j.startedAt, endedAt: j.endedAt ?? null };
}

/** The status of the named agents (every agent not revoked, without names); an unknown name is an error. */
export async function agentStatuses(deps: StatusDeps, names: readonly string[] = []): Promise<AgentStatus[]> {
  const all = deps.agents();
  for (const n of names) {
    if (!all.some((a) => a.name === n)) throw new ControllerError('E_AGENT_UNKNOWN', `no agent named '${n}' (see 'controller agents')`);
  }
  const chosen = names.length ? all.filter((a) => names.includes(a.name)) : all.filter((a) => a.revokedAt === undefined);
  const now = (deps.now ?? Date.now)();
  const cfg = deps.config().status;
  return Promise.all(
    chosen.map(async (a): Promise<AgentStatus> => {
      const input = healthInput(deps.store, a.name, a.enrolledAt);
      const t = thresholds(cfg, deps.maxAge?.(a.name));
      const h = judge(input, t, now);
      const facts = await readRepoFacts(deps.paths, a.name);
      const good = input.lastGood;
      const lastGoodAt = good ? (good.endedAt ?? good.startedAt) : null;
      return {
        name: a.name,
        connected: deps.connected(a.name),
        lastGoodAt,
        lastGood: good
          ? {
              durationMs: Math.max(0, (good.endedAt ?? good.startedAt) - good.startedAt),
              originalSize: good.stats?.originalSize ?? null,
              deduplicatedSize: good.stats?.deduplicatedSize ?? null,
            }
          : null,
        lastBackup: summary(deps.store.latest(a.name, 'backup', (j) => j.status !== 'running')),
        lastCheck: summary(input.lastCheck),
        nextRun: deps.nextRun?.(a.name) ?? null,
        archives: facts?.archives ?? null,
        repositorySize: facts?.size ?? null,
        factsAt: facts?.at ?? null,
        // A revoked agent named on the command line is shown, never judged.
        level: a.revokedAt === undefined ? h.level : 0,
        overdue: a.revokedAt === undefined && h.overdue,
        problems: a.revokedAt === undefined ? h.problems : ['revoked'],
        warnAfter: t.warnAfter,
        overdueAfter: t.overdueAfter,
      };
    }),
  );
}
