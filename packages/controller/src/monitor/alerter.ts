/**
 * Decides when to alert, and hands the hooks to the HookRunner:
 * - failure: a backup, prune, compact or check ended failed (a backup skipped
 *   because its agent was offline is no failure: `overdue` covers an agent
 *   that stays away). Restores are not alerted: someone is at the terminal.
 * - success: such a job ended good (succeeded, or warning).
 * - overdue: an agent's last good backup became older than its overdue
 *   threshold (health.ts); checked by a timer, said once per transition.
 * - recovery: the first good job of a kind after that kind failed for the
 *   agent, or the first good backup after it was overdue.
 * What was said (failing, overdue) is kept in `STATE/alert-state.json`, so a
 * restart neither repeats an overdue alert nor forgets a pending recovery.
 */
import { readFile } from 'node:fs/promises';
import { errorMessage, writeFileAtomic } from '@borgpull/protocol';
import type { Logger } from 'pino';
import type { ControllerConfig } from '../config.js';
import { isGood, type JobKind, type JobRecord, type JobStore } from '../jobs/job-store.js';
import type { StatePaths } from '../state.js';
import type { AlertPayload } from './alert-hooks.js';
import { healthInput, judge, thresholds } from './health.js';
import type { AlertEvent, AlertHook } from './monitor-config.js';

const ALERTED_KINDS: ReadonlySet<JobKind> = new Set(['backup', 'prune', 'compact', 'check']);
/** The overdue timer's period: a quarter of the shortest overdue threshold, between 1 s and a minute. */
const MAX_TICK_MS = 60_000;
const MIN_TICK_MS = 1000;

export interface HookSink {
  fire(payload: AlertPayload, hooks: readonly AlertHook[], defaultTimeout: number): void;
}

export interface AlerterDeps {
  readonly paths: Pick<StatePaths, 'alertState'>;
  readonly log: Logger;
  /** The daemon's config as of its last reload. */
  readonly config: () => Pick<ControllerConfig, 'alerts' | 'status'>;
  /** Enrolled agents (revoked ones are left out of overdue checks). */
  readonly agents: () => ReadonlyArray<{ readonly name: string; readonly enrolledAt: number; readonly revokedAt?: number }>;
  /** The schedule's maxAge for an agent, in seconds (health.ts's thresholds(): undefined, the defaults; null, never judged by age). */
  readonly maxAge?: (agent: string) => number | null | undefined;
  readonly hooks: HookSink;
  readonly now?: () => number;
}

interface SavedState {
  failing: string[];
  overdue: string[];
}

export class Alerter {
  /** "agent/kind" whose last job of that kind failed. */
  private readonly failing = new Set<string>();
  private readonly overdue = new Set<string>();
  private store?: Pick<JobStore, 'latest' | 'onEnd' | 'query'>;
  private off?: () => void;
  private timer?: NodeJS.Timeout;
  private saving: Promise<void> = Promise.resolve();
  private readonly now: () => number;

  constructor(private readonly deps: AlerterDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** Loads what was said before (or derives it from the history), follows job ends, starts the overdue timer. */
  async start(store: Pick<JobStore, 'latest' | 'onEnd' | 'query'>, opts: { timer?: boolean } = {}): Promise<void> {
    this.store = store;
    const saved = await this.load();
    if (saved) {
      for (const k of saved.failing) this.failing.add(k);
      for (const a of saved.overdue) this.overdue.add(a);
    } else {
      // First start: what failed last is failing (its recovery will be said), without alerting now.
      for (const a of this.deps.agents()) {
        for (const kind of ALERTED_KINDS) {
          const last = store.latest(a.name, kind, (j) => j.status !== 'running' && j.status !== 'offline');
          if (last?.status === 'failed') this.failing.add(`${a.name}/${kind}`);
        }
      }
    }
    this.off = store.onEnd((job) => this.jobEnded(job));
    if (opts.timer !== false) this.schedule();
  }

  stop(): void {
    this.off?.();
    this.off = undefined;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** After a config reload: the overdue thresholds, and so the timer's period, may have changed. */
  reschedule(): void {
    if (!this.timer) return;
    clearTimeout(this.timer);
    this.schedule();
  }

  /** Waits for the state file's last write (tests). */
  flushed(): Promise<void> {
    return this.saving;
  }

  private schedule(): void {
    const t = this.deps.config().status;
    const agents = this.deps.agents().filter((a) => a.revokedAt === undefined);
    let shortest = Infinity;
    for (const a of agents) {
      const o = thresholds(t, this.deps.maxAge?.(a.name)).overdueAfter;
      if (o !== null) shortest = Math.min(shortest, o * 1000);
    }
    const ms = Math.max(MIN_TICK_MS, Math.min(MAX_TICK_MS, shortest / 4));
    this.timer = setTimeout(() => {
      try {
        this.checkOverdue();
      } catch (err) {
        this.deps.log.error({ reason: errorMessage(err) }, 'overdue check failed');
      }
      if (this.off) this.schedule();
    }, ms);
    this.timer.unref();
  }

  private fire(event: AlertEvent, payload: AlertPayload): void {
    const cfg = this.deps.config().alerts;
    this.deps.log.info({ event, agentId: payload.agent, jobId: payload.jobId, kind: payload.kind }, 'alert');
    this.deps.hooks.fire(payload, cfg.hooks[event], cfg.timeout);
  }

  /** One job's end, as the store reports it (saved, final status). */
  jobEnded(job: JobRecord): void {
    if (!ALERTED_KINDS.has(job.kind) || job.status === 'running' || job.status === 'offline') return;
    const key = `${job.agent}/${job.kind}`;
    const base = {
      agent: job.agent,
      kind: job.kind,
      jobId: job.id,
      status: job.status,
      code: job.code,
      reason: job.reason,
      archive: job.archive,
      trigger: job.trigger,
      startedAt: job.startedAt,
      endedAt: job.endedAt,
      at: this.now(),
    };
    if (job.status === 'failed') {
      this.fire('failure', {
        ...base,
        event: 'failure',
        message: `${job.kind} of ${job.agent} failed${job.code ? ` (${job.code})` : ''}${job.reason ? `: ${job.reason}` : ''}`,
      });
      if (!this.failing.has(key)) {
        this.failing.add(key);
        this.save();
      }
      return;
    }
    if (!isGood(job)) return;
    this.fire('success', {
      ...base,
      event: 'success',
      message: `${job.kind} of ${job.agent} ${job.status === 'warning' ? 'ended with warnings' : 'succeeded'}`,
    });
    const wasFailing = this.failing.delete(key);
    const wasOverdue = job.kind === 'backup' && this.overdue.delete(job.agent);
    if (wasFailing || wasOverdue) {
      this.fire('recovery', {
        ...base,
        event: 'recovery',
        lastGoodAt: job.endedAt ?? null,
        message: `${job.kind} of ${job.agent} is good again (after ${wasOverdue ? 'being overdue' : 'a failure'})`,
      });
      this.save();
    }
  }

  /** Fires `overdue` for each agent that became overdue since the last check; forgets those that no longer are. */
  checkOverdue(): void {
    const store = this.store;
    if (!store) return;
    const cfg = this.deps.config().status;
    const now = this.now();
    let changed = false;
    const live = new Set<string>();
    for (const a of this.deps.agents()) {
      if (a.revokedAt !== undefined) continue;
      live.add(a.name);
      const input = healthInput(store, a.name, a.enrolledAt);
      const h = judge(input, thresholds(cfg, this.deps.maxAge?.(a.name)), now);
      if (h.overdue && !this.overdue.has(a.name)) {
        this.overdue.add(a.name);
        changed = true;
        const lastGoodAt = input.lastGood?.endedAt ?? null;
        this.fire('overdue', {
          event: 'overdue',
          agent: a.name,
          kind: 'backup',
          lastGoodAt,
          message: `${a.name} is overdue: ${h.problems[0] ?? 'no recent good backup'}`,
          at: now,
        });
      } else if (!h.overdue && this.overdue.delete(a.name)) changed = true;
    }
    for (const a of [...this.overdue]) if (!live.has(a) && this.overdue.delete(a)) changed = true;
    if (changed) this.save();
  }

  private async load(): Promise<SavedState | undefined> {
    try {
      const o = JSON.parse(await readFile(this.deps.paths.alertState, 'utf8')) as Record<string, unknown>;
      const list = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
      return { failing: list(o['failing']), overdue: list(o['overdue']) };
    } catch {
      return undefined;
    }
  }

  private save(): void {
    const text = JSON.stringify({ failing: [...this.failing].sort(), overdue: [...this.overdue].sort() }) + '\n';
    this.saving = this.saving
      .then(() => writeFileAtomic(this.deps.paths.alertState, text, 0o600))
      .catch((err: unknown) => this.deps.log.warn({ reason: errorMessage(err) }, 'could not save the alert state'));
  }
}
