/**
 * The Prometheus text exposition format 0.0.4: every family with its HELP and
 * TYPE, label values escaped as the format says (backslash, double quote,
 * newline), so no value, whoever chose it, can end a line or a label and
 * inject a sample. Agent names are restricted at enrollment; they are escaped
 * anyway.
 */
import { JOB_KINDS, JOB_STATUSES, type JobKind, type JobRecord, type JobStatus } from '../jobs/job-store.js';
import type { AgentStatus } from './agent-status.js';

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** A label value as the format wants it: `\` -> `\\`, `"` -> `\"`, newline -> `\n`. */
export function labelValue(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text: `\` -> `\\`, newline -> `\n`. */
function helpText(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function num(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

type Labels = Readonly<Record<string, string>>;

class Exposition {
  private readonly lines: string[] = [];

  family(name: string, type: 'gauge' | 'counter', help: string, samples: ReadonlyArray<readonly [Labels, number]>): void {
    this.lines.push(`# HELP ${name} ${helpText(help)}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of samples) {
      const l = Object.entries(labels)
        .map(([k, val]) => `${k}="${labelValue(val)}"`)
        .join(',');
      this.lines.push(`${name}${l ? `{${l}}` : ''} ${num(v)}`);
    }
  }

  text(): string {
    return this.lines.join('\n') + '\n';
  }
}

/** Finished jobs by kind and outcome since the daemon started (counters: they reset with it, which Prometheus expects). */
export class JobCounters {
  private readonly counts = new Map<string, number>();

  constructor() {
    for (const k of JOB_KINDS) for (const s of JOB_STATUSES) if (s !== 'running') this.counts.set(`${k}/${s}`, 0);
  }

  add(job: JobRecord): void {
    if (job.status === 'running') return;
    const key = `${job.kind}/${job.status}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  entries(): Array<{ kind: JobKind; outcome: Exclude<JobStatus, 'running'>; count: number }> {
    return [...this.counts].map(([key, count]) => {
      const [kind, outcome] = key.split('/') as [JobKind, Exclude<JobStatus, 'running'>];
      return { kind, outcome, count };
    });
  }
}

export interface MetricsInput {
  readonly agents: readonly AgentStatus[];
  readonly counters: JobCounters;
  readonly running: number;
  readonly queued: number;
  readonly version: string;
  readonly startedAt: number;
}

export function renderMetrics(m: MetricsInput): string {
  const e = new Exposition();
  const per = (pick: (a: AgentStatus) => number | null | undefined): Array<readonly [Labels, number]> =>
    m.agents.flatMap((a) => {
      const v = pick(a);
      return v === null || v === undefined ? [] : [[{ agent: a.name }, v] as const];
    });
  e.family('borgpull_build_info', 'gauge', "The controller's version (always 1).", [[{ version: m.version }, 1]]);
  e.family('borgpull_start_time_seconds', 'gauge', 'When the controller daemon started (Unix time).', [[{}, m.startedAt / 1000]]);
  e.family('borgpull_agents_connected', 'gauge', 'Agents connected now.', [[{}, m.agents.filter((a) => a.connected).length]]);
  e.family('borgpull_jobs_running', 'gauge', 'Jobs running now.', [[{}, m.running]]);
  e.family('borgpull_jobs_queued', 'gauge', 'Jobs waiting for a slot.', [[{}, m.queued]]);
  e.family(
    'borgpull_jobs_total',
    'counter',
    'Jobs finished since the controller started, by kind and outcome.',
    m.counters.entries().map((c) => [{ kind: c.kind, outcome: c.outcome }, c.count] as const),
  );
  e.family(
    'borgpull_agent_connected',
    'gauge',
    'Whether the agent is connected (1) or not (0).',
    per((a) => (a.connected ? 1 : 0)),
  );
  e.family(
    'borgpull_agent_status',
    'gauge',
    'The agent as controller status judges it: 0 ok, 1 warning, 2 critical (overdue or failing).',
    per((a) => a.level),
  );
  e.family(
    'borgpull_agent_overdue',
    'gauge',
    "Whether the agent's last good backup is older than its overdue threshold.",
    per((a) => (a.overdue ? 1 : 0)),
  );
  e.family(
    'borgpull_agent_last_success_timestamp_seconds',
    'gauge',
    "When the agent's last good backup ended (Unix time).",
    per((a) => (a.lastGoodAt === null ? null : a.lastGoodAt / 1000)),
  );
  e.family(
    'borgpull_agent_last_backup_duration_seconds',
    'gauge',
    "How long the agent's last good backup took.",
    per((a) => (a.lastGood ? a.lastGood.durationMs / 1000 : null)),
  );
  e.family(
    'borgpull_agent_last_backup_original_bytes',
    'gauge',
    "The agent's last good archive: size of its files.",
    per((a) => a.lastGood?.originalSize),
  );
  e.family(
    'borgpull_agent_last_backup_deduplicated_bytes',
    'gauge',
    "The agent's last good archive: new data it added to the repository, compressed and deduplicated.",
    per((a) => a.lastGood?.deduplicatedSize),
  );
  e.family(
    'borgpull_agent_archives',
    'gauge',
    "Archives in the agent's repository (as of its last good backup, prune or compact).",
    per((a) => a.archives),
  );
  e.family(
    'borgpull_agent_repository_bytes',
    'gauge',
    "The agent's repository: deduplicated, compressed bytes (as of its last good backup, prune or compact).",
    per((a) => a.repositorySize),
  );
  e.family(
    'borgpull_agent_next_run_timestamp_seconds',
    'gauge',
    "The scheduler's next run for the agent (Unix time).",
    per((a) => (a.nextRun === null ? null : a.nextRun / 1000)),
  );
  return e.text();
}
