import { errorMessage } from '@borgpull/protocol';
import type { Logger } from 'pino';
import type { JobKind, JobRecord, JobStore, JobTrigger } from '../jobs/job-store.js';
import { plan, retryDelay, type Plan, type RunHistory } from './next-run.js';
import { maxAge, type Schedule } from './schedule.js';

/** One kind of job the scheduler starts by itself (backups; checks once that job exists). */
export interface ScheduledKind {
  readonly kind: JobKind;
  /** The agent's schedule for this kind, from the current config. */
  readonly schedule: (agent: string) => Schedule;
  /** Starts the job (through the runner's queue); settles when it ended or never started. */
  readonly run: (agent: string, trigger: JobTrigger) => Promise<unknown>;
  /** Where an agent's schedule starts when it never ran this kind (undefined: due at once). */
  readonly firstBase?: (agent: string) => number | undefined;
}

export interface SchedulerDeps {
  readonly store: Pick<JobStore, 'query' | 'onEnd'>;
  /** Enrolled agents that are not revoked. */
  readonly agents: () => readonly string[];
  /** When the agent's live connection opened; undefined when it is not connected. */
  readonly connectedAt: (agent: string) => number | undefined;
  /** The settle delay after a connection (ms), from the current config. */
  readonly settleMs: () => number;
  readonly kinds: readonly ScheduledKind[];
  readonly log: Logger;
  readonly now?: () => number;
}

export type SchedulerState = 'created' | 'running' | 'stopped';

/** Re-checks at least this often, so a wall clock that was set (NTP, by hand) is noticed. */
const MAX_SLEEP_MS = 5 * 60_000;
/** Enough history to count failures in a row up to where the back-off stops growing. */
const HISTORY_DEPTH = 16;
/** Never starts the same agent's same kind twice within this (a run that settles without a record). */
const MIN_GAP_MS = 1000;

/**
 * Starts jobs when they are due: scheduled runs, missed runs (once), retries
 * after failures, and due runs of agents that just connected. One timer for
 * all agents, set for the earliest due time; every decision comes from the
 * job history (so a restart knows what already ran) and the pure `plan`.
 * Only connected agents are started: an offline agent is never retried in a
 * loop, it is due when it connects. Jobs go through the runner's queue, so
 * a thousand due agents wait their turn under `parallel`.
 */
export class Scheduler {
  state: SchedulerState = 'created';
  private timer?: NodeJS.Timeout;
  private wakeAt = Number.POSITIVE_INFINITY;
  /**
   * The next run of each connected agent's kinds, planned when something
   * about that agent changed (it connected or disconnected, a job of its
   * ended, it was revoked), not for every agent at every event: a thousand
   * agents reconnecting after a restart, or a night of job ends, would
   * otherwise re-plan every agent once per event (quadratic: 5,000 agents
   * could not all reconnect within a minute).
   */
  private readonly due = new Map<string, Due>();
  /** Agents to re-plan at the next wake; 'all' after a reload, at start, and every MAX_SLEEP_MS. */
  private stale: 'all' | Set<string> = 'all';
  private lastFull = Number.NEGATIVE_INFINITY;
  private offEnd?: () => void;
  /** Jobs this scheduler started and that have not settled, by kind and agent. */
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Not before: per kind and agent, after a run that settled (see MIN_GAP_MS, and runs that never started). */
  private readonly notBefore = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly deps: SchedulerDeps) {
    this.now = deps.now ?? Date.now;
  }

  start(): void {
    if (this.state !== 'created') return;
    this.state = 'running';
    this.deps.log.info({ from: 'created', to: 'running' }, 'scheduler state');
    // A job that ends (any job: a manual one too) changes what is due next for its agent.
    this.offEnd = this.deps.store.onEnd((job) => this.poke(job.agent));
    this.poke();
  }

  /** Stops starting jobs (jobs already started are the runner's to stop). Idempotent. */
  stop(): void {
    if (this.state === 'stopped') return;
    this.deps.log.info({ from: this.state, to: 'stopped' }, 'scheduler state');
    this.state = 'stopped';
    clearTimeout(this.timer);
    this.timer = undefined;
    this.offEnd?.();
  }

  /**
   * Re-plans soon: `agent` alone when something about it changed (it
   * connected, disconnected or was revoked, a job of its ended), every agent
   * without one (the config was reloaded).
   */
  poke(agent?: string): void {
    if (agent === undefined) this.stale = 'all';
    else if (this.stale !== 'all') this.stale.add(agent);
    this.arm(this.now());
  }

  /**
   * An agent connected (daemon.addLink): a backup it is owed (its last good
   * one older than its schedule allows, or never) starts once the
   * connection settled; `plan` decides, this says so in the log.
   */
  agentConnected(agent: string): void {
    const backup = this.deps.kinds.find((k) => k.kind === 'backup');
    const max = backup && maxAge(backup.schedule(agent));
    if (backup && max !== null && max !== undefined) {
      const good = this.deps.store.query({ limit: 1, agent, kind: 'backup', status: ['succeeded', 'warning'] })[0];
      if (!good || this.now() - good.startedAt > max) {
        this.deps.log.info(
          { agentId: agent, lastGood: good?.startedAt ?? null, dueAt: this.nextRun(agent) },
          'agent connected behind its schedule: backing it up once the connection settled',
        );
      }
    }
    this.poke(agent);
  }

  /** When `agent`'s next job of `kind` is due (epoch ms; now or earlier: due now), or null when its schedule is off. */
  nextRun(agent: string, kind: JobKind = 'backup'): number | null {
    const k = this.deps.kinds.find((x) => x.kind === kind);
    if (!k) return null;
    const p = this.planFor(k, agent, this.now());
    return p && Math.max(p.at, this.notBefore.get(key(kind, agent)) ?? 0);
  }

  private planFor(k: ScheduledKind, agent: string, now: number, history = this.history(agent, k.kind)): Plan | null {
    return plan({
      schedule: k.schedule(agent),
      agent,
      now,
      history,
      firstBase: k.firstBase?.(agent),
      connectedAt: this.deps.connectedAt(agent),
      settleMs: this.deps.settleMs(),
    });
  }

  /**
   * The newest attempt and the failures in a row, newest first; 'offline'
   * records never reached the agent. A job under way counts as the newest
   * attempt (not failed), and says so: nothing more starts until it ends.
   */
  private history(agent: string, kind: JobKind): RunHistory & { readonly running: boolean } {
    const recs = this.deps.store.query({ limit: HISTORY_DEPTH, agent, kind });
    let last: RunHistory['last'];
    let failures = 0;
    let running = false;
    for (const r of recs) {
      if (r.status === 'offline') continue;
      if (r.status === 'running') {
        if (last === undefined) {
          running = true;
          last = { startedAt: r.startedAt, failed: false };
          break;
        }
        continue;
      }
      const failed = r.status === 'failed';
      last ??= { startedAt: r.startedAt, endedAt: r.endedAt, failed };
      if (!failed) break;
      failures++;
    }
    return { last, failures, running };
  }

  private arm(at: number): void {
    if (this.state !== 'running') return;
    if (this.timer && at >= this.wakeAt) return;
    clearTimeout(this.timer);
    const now = this.now();
    const wait = Math.min(Math.max(0, at - now), MAX_SLEEP_MS);
    this.wakeAt = now + wait;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.wakeAt = Number.POSITIVE_INFINITY;
      this.wake();
    }, wait);
  }

  /** Re-plans the agents that changed, starts whatever is due, then sleeps until the earliest next due time. */
  private wake(): void {
    if (this.state !== 'running') return;
    const now = this.now();
    // Now and then every agent, so that nothing planned can go stale unnoticed (a clock that was set).
    if (now - this.lastFull >= MAX_SLEEP_MS) this.stale = 'all';
    let agents: Iterable<string>;
    if (this.stale === 'all') {
      this.due.clear();
      this.lastFull = now;
      agents = this.deps.agents();
    } else agents = this.stale;
    this.stale = new Set();
    const planned = new Set<string>();
    for (const agent of agents) {
      this.replan(agent, now);
      planned.add(agent);
    }
    // What came due since it was planned is planned again first: a job started meanwhile
    // (by hand, say: starting one does not poke us) means nothing is due until it ends.
    for (const d of [...this.due.values()]) if (d.at <= now && !planned.has(d.agent)) this.replan(d.agent, now);
    let next = now + MAX_SLEEP_MS;
    for (const [id, d] of this.due) {
      if (d.at > now) {
        next = Math.min(next, d.at);
        continue;
      }
      this.due.delete(id);
      this.launch(d.kind, d.agent, d.trigger);
    }
    this.arm(next);
  }

  /** Plans `agent`'s next run of each kind: none while it is not connected or a job of that kind is under way. */
  private replan(agent: string, now: number): void {
    for (const k of this.deps.kinds) this.due.delete(key(k.kind, agent));
    // Not connected: due when it connects (addLink pokes us); its history need not be read now.
    if (this.deps.connectedAt(agent) === undefined) return;
    for (const k of this.deps.kinds) {
      const id = key(k.kind, agent);
      if (this.inFlight.has(id)) continue;
      let p: Plan | null;
      try {
        const h = this.history(agent, k.kind);
        // A job of this kind is under way (started by hand, say): its end pokes us.
        if (h.running) continue;
        p = this.planFor(k, agent, now, h);
      } catch (err) {
        this.deps.log.error({ agentId: agent, kind: k.kind, reason: errorMessage(err) }, 'could not plan the next run');
        continue;
      }
      if (p) this.due.set(id, { at: Math.max(p.at, this.notBefore.get(id) ?? 0), kind: k, agent, trigger: p.trigger });
    }
  }

  private launch(k: ScheduledKind, agent: string, trigger: JobTrigger): void {
    const id = key(k.kind, agent);
    this.deps.log.info({ agentId: agent, kind: k.kind, trigger }, 'scheduled job due');
    const started = this.now();
    const done = k
      .run(agent, trigger)
      .then(
        (res) => {
          const newest = this.deps.store.query({ limit: 1, agent, kind: k.kind })[0];
          // A run that left no record of its own would be due again at once: wait as after a failure.
          this.notBefore.set(id, newest && newest.startedAt >= started ? started + MIN_GAP_MS : this.now() + retryDelay(1));
          if (!isRecord(res)) return;
          if (res.status === 'failed')
            this.deps.log.warn({ agentId: agent, kind: k.kind, code: res.code }, 'scheduled job failed; it will be retried');
        },
        (err: unknown) => {
          // No record to go by (it never started: cancelled, or the daemon is stopping): wait as after a failure.
          this.notBefore.set(id, this.now() + retryDelay(1));
          this.deps.log.warn({ agentId: agent, kind: k.kind, reason: errorMessage(err) }, 'scheduled job did not run');
        },
      )
      .finally(() => {
        this.inFlight.delete(id);
        this.poke(agent);
      });
    this.inFlight.set(id, done);
  }
}

/** A planned run. */
interface Due {
  readonly at: number;
  readonly kind: ScheduledKind;
  readonly agent: string;
  readonly trigger: JobTrigger;
}

function key(kind: JobKind, agent: string): string {
  return `${kind}\0${agent}`;
}

function isRecord(v: unknown): v is JobRecord {
  return typeof v === 'object' && v !== null && 'status' in v;
}

/**
 * Checks on their own schedule (the check job itself is the retention
 * slice's): an agent that was never checked is first due one interval after
 * its enrolment, not at once, so a fresh install does not read every
 * repository in its first hour.
 */
export function checkKind(deps: {
  readonly schedule: (agent: string) => Schedule;
  readonly check: (agent: string, trigger: JobTrigger) => Promise<unknown>;
  readonly enrolledAt: (agent: string) => number | undefined;
}): ScheduledKind {
  return { kind: 'check', schedule: deps.schedule, run: deps.check, firstBase: deps.enrolledAt };
}
