/**
 * The daemon's monitoring, in one object: `controller status`, the alerts and
 * the metrics endpoint, all following the job history (`store.onEnd`). The
 * daemon makes it once its job runner has started, and stops it before the
 * admin socket closes.
 */
import type { Logger } from 'pino';
import type { AgentLink } from '../agent-link.js';
import type { ControllerConfig } from '../config.js';
import type { JobRunner } from '../jobs/job-runner.js';
import type { JobStore } from '../jobs/job-store.js';
import type { Registry } from '../registry.js';
import type { StatePaths } from '../state.js';
import { controllerVersion } from '../version.js';
import { HookRunner } from './hook-runner.js';
import { Alerter } from './alerter.js';
import { agentStatuses, type AgentStatus, type StatusDeps } from './agent-status.js';
import { JobCounters, renderMetrics } from './metrics.js';
import { MetricsServer } from './metrics-server.js';

const HOOK_STOP_GRACE_MS = 5000;

export interface MonitorDeps {
  readonly paths: StatePaths;
  readonly log: Logger;
  readonly config: () => ControllerConfig;
  readonly registry: Pick<Registry, 'agents'>;
  readonly links: ReadonlyMap<string, AgentLink>;
  readonly jobs: Pick<JobRunner, 'busyAgents' | 'queuedJobs'>;
  /** The scheduler's next run for an agent (ms), when a scheduler runs. */
  readonly nextRun?: (agent: string) => number | null;
  /**
   * How old an agent's last good backup may be under its schedule, in ms as
   * schedule.ts's `maxAge(schedule)` gives it (null: schedule off). Unset
   * thresholds follow it: warning past it, overdue past twice it. An agent
   * whose schedule is off (no `schedule` at all, say: backups run from a
   * timer outside) is judged by the default thresholds.
   */
  readonly maxAgeMs?: (agent: string) => number | null;
}

export class Monitor {
  private readonly hooks: HookRunner;
  private readonly counters = new JobCounters();
  private alerter?: Alerter;
  private metrics?: MetricsServer;
  private store?: JobStore;
  private offCounters?: () => void;
  private readonly startedAt = Date.now();

  /** maxAgeMs in seconds, as health.ts counts. */
  private readonly maxAge?: (agent: string) => number | undefined;

  constructor(private readonly deps: MonitorDeps) {
    this.hooks = new HookRunner(deps.log.child({ component: 'alerts' }));
    const ms = deps.maxAgeMs;
    if (ms) {
      this.maxAge = (agent) => {
        const v = ms(agent);
        // undefined: judged as without a scheduler (health.ts's defaults).
        return v === null ? undefined : Math.ceil(v / 1000);
      };
    }
  }

  async start(store: JobStore): Promise<void> {
    this.store = store;
    this.offCounters = store.onEnd((job) => this.counters.add(job));
    const agents = (): ReturnType<Registry['agents']> => this.deps.registry.agents();
    this.alerter = new Alerter({
      paths: this.deps.paths,
      log: this.deps.log.child({ component: 'alerts' }),
      config: this.deps.config,
      agents,
      maxAge: this.maxAge,
      hooks: this.hooks,
    });
    await this.alerter.start(store);
    // Bound at start, like `listen`: a change needs a restart.
    const m = this.deps.config().metrics;
    if (m) {
      this.metrics = new MetricsServer(m, () => this.renderMetrics(), this.deps.log.child({ component: 'metrics' }));
      await this.metrics.start();
    }
  }

  /** The daemon re-read its config: alert thresholds apply at once (metrics.listen needs a restart). */
  reloaded(): void {
    this.alerter?.reschedule();
  }

  private statusDeps(store: JobStore): StatusDeps {
    return {
      paths: this.deps.paths,
      agents: () => this.deps.registry.agents(),
      connected: (name) => this.deps.links.get(name)?.state === 'open',
      store,
      config: this.deps.config,
      nextRun: this.deps.nextRun,
      maxAge: this.maxAge,
    };
  }

  status(names: readonly string[]): Promise<AgentStatus[]> {
    if (!this.store) return Promise.resolve([]);
    return agentStatuses(this.statusDeps(this.store), names);
  }

  async renderMetrics(): Promise<string> {
    const agents = await this.status([]);
    return renderMetrics({
      agents,
      counters: this.counters,
      running: this.deps.jobs.busyAgents().size,
      queued: this.deps.jobs.queuedJobs().length,
      version: controllerVersion(),
      startedAt: this.startedAt,
    });
  }

  async stop(): Promise<void> {
    this.offCounters?.();
    this.alerter?.stop();
    await this.metrics?.stop();
    // Alerts for the jobs the stop cancelled get a few seconds to go out.
    await this.hooks.stop(HOOK_STOP_GRACE_MS);
  }
}
