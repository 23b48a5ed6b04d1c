import { errorMessage } from '@borgpull/protocol';
import type { Logger } from 'pino';
import type { AgentLink } from '../agent-link.js';
import type { BackupArgs, BackupOutcome, BusyAgent, RestoreOutcome } from '../admin/api.js';
import { loadConfig, pinRestartKeys, type ControllerConfig } from '../config.js';
import { ControllerError } from '../errors.js';
import type { Registry } from '../registry.js';
import type { StatePaths } from '../state.js';
import { runBackup } from './backup.js';
import { breakStaleJobLock, discardArchive } from './borg.js';
import type { JobContext } from './job-context.js';
import type { JobEvent } from './job-event.js';
import { JobStore, type JobKind, type JobRecord } from './job-store.js';
import { Limiter } from './limiter.js';
import { runRestore, type RestoreRequest } from './restore.js';

export type RunnerState = 'created' | 'starting' | 'running' | 'stopping' | 'stopped';

/** An agent with a job of this daemon under way: no second job for it starts until this one ends. */
export interface BusyState {
  readonly kind: JobKind;
  readonly since: number;
}

/** The jobs and the repository steps of crash recovery; the daemon uses the real ones, a unit test of the runner its fakes. */
export interface JobOps {
  readonly backup: typeof runBackup;
  readonly restore: typeof runRestore;
  readonly breakStaleJobLock: typeof breakStaleJobLock;
  readonly discardArchive: typeof discardArchive;
}

const REAL_OPS: JobOps = { backup: runBackup, restore: runRestore, breakStaleJobLock, discardArchive };

export interface JobRunnerDeps {
  readonly paths: StatePaths;
  readonly registry: Pick<Registry, 'get' | 'agents'>;
  /** The daemon's live agent connections, by name (the daemon adds and removes them). */
  readonly links: ReadonlyMap<string, AgentLink>;
  /** The config the daemon started with: its RESTART_KEYS hold for every job. */
  readonly config: ControllerConfig;
  readonly log: Logger;
  readonly ops?: JobOps;
}

/**
 * Runs the daemon's jobs: at most `parallel` at once, one per agent, each
 * recorded in the job store. `start()` recovers from a daemon that died
 * mid-job before any command is taken: its running jobs are marked failed,
 * their locks broken and their archives discarded (their processes died with
 * it: job scripts carry pdeathsig). `stop(grace)` takes no more work, lets
 * running jobs finish for up to `grace` ms, then cancels them; each job's
 * cleanup stack runs either way.
 */
export class JobRunner {
  state: RunnerState = 'created';
  private store?: JobStore;
  private limiter?: Limiter;
  private readonly ops: JobOps;
  private readonly busy = new Map<string, BusyState>();
  /** Ids of running jobs: a borg lock held by one of them is not stale. */
  private readonly running = new Set<string>();
  /** Cancels every job at the end of `stop`'s grace. */
  private readonly cancel = new AbortController();
  private readonly active = new Set<Promise<unknown>>();
  private starting?: Promise<void>;
  private stopping?: Promise<void>;

  constructor(private readonly deps: JobRunnerDeps) {
    this.ops = deps.ops ?? REAL_OPS;
  }

  private transition(next: RunnerState): void {
    this.deps.log.info({ from: this.state, to: next }, 'job runner state');
    this.state = next;
  }

  /** Opens the job store and recovers from a previous daemon's death; commands that arrive meanwhile wait for it. */
  start(): Promise<void> {
    if (this.state !== 'created') throw new ControllerError('E_INTERNAL', `job runner cannot start from ${this.state}`);
    this.transition('starting');
    this.starting = (async () => {
      const store = await JobStore.open(this.deps.paths.jobs);
      await this.recover(store);
      this.store = store;
      this.limiter = new Limiter(this.deps.config.parallel);
      // stop() may have come first: it stays stopping.
      if (this.state === 'starting') this.transition('running');
    })();
    return this.starting;
  }

  /** Jobs that were running when a previous daemon died: failed, their locks broken, their archives discarded. */
  private async recover(store: JobStore): Promise<void> {
    const stale = await store.failInterrupted();
    if (stale.length === 0) return;
    const log = this.deps.log;
    log.warn({ jobs: stale.map((j) => j.id) }, 'marked jobs interrupted by a previous stop as failed');
    for (const j of stale) {
      if (j.kind !== 'backup' || j.archive === undefined || !this.deps.registry.get(j.agent)) continue;
      try {
        await this.ops.breakStaleJobLock(this.deps.paths, j.agent, () => false);
        const gone = await this.ops.discardArchive(this.deps.paths, j.agent, j.archive);
        if (gone.length) log.warn({ agentId: j.agent, archives: gone }, 'deleted the archive of an interrupted backup');
      } catch (err) {
        log.error({ agentId: j.agent, reason: errorMessage(err) }, 'could not clean up after an interrupted backup');
      }
    }
  }

  /** Takes no more work, lets running jobs finish for up to `graceMs`, then cancels them and waits for their cleanup. Idempotent. */
  stop(graceMs: number, reason: string): Promise<void> {
    if (this.stopping) return this.stopping;
    if (this.state === 'created') {
      this.state = 'stopped';
      this.stopping = Promise.resolve();
      return this.stopping;
    }
    // At once, not after an await: a command that comes in from here on is refused.
    this.transition('stopping');
    this.stopping = (async () => {
      await this.starting?.catch(() => undefined);
      const all = Promise.allSettled([...this.active]);
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<'grace over'>((resolve) => (timer = setTimeout(() => resolve('grace over'), Math.max(0, graceMs))));
      const first = await Promise.race([all.then(() => 'drained' as const), graceOver]);
      clearTimeout(timer);
      if (first === 'grace over' && this.active.size > 0) {
        this.deps.log.warn({ jobs: [...this.running], graceMs }, 'cancelling the jobs still running');
        this.cancel.abort(new ControllerError('E_JOB_CANCELLED', `controller stopping (${reason})`));
      }
      while (this.active.size > 0) await Promise.allSettled([...this.active]);
      this.transition('stopped');
    })();
    return this.stopping;
  }

  /** Agents with a job under way, and since when. */
  busyAgents(): ReadonlyMap<string, BusyState> {
    return this.busy;
  }

  /** Backs up the named agents (or all that are not revoked), `parallel` at a time; one outcome per agent. */
  async backup(args: BackupArgs, emit: (e: JobEvent) => void, signal: AbortSignal): Promise<BackupOutcome[]> {
    await this.ready();
    const names = args.all
      ? this.deps.registry
          .agents()
          .filter((a) => a.revokedAt === undefined)
          .map((a) => a.name)
      : [...args.names];
    if (names.length === 0)
      throw new ControllerError('E_JOB_NOTHING', args.all ? 'no agents enrolled' : 'name at least one agent, or pass --all');
    for (const n of names) {
      if (!this.deps.registry.get(n)) throw new ControllerError('E_AGENT_UNKNOWN', `no agent named '${n}' (see 'controller agents')`);
    }
    const one = async (name: string): Promise<BackupOutcome> => {
      emit({ agent: name, jobId: '', phase: 'queued' });
      try {
        return await this.runJob('backup', name, (ctx, both) => this.ops.backup(ctx, name, emit, both), signal);
      } catch (err) {
        const busy = this.busy.get(name);
        if (err instanceof ControllerError && err.code === 'E_JOB_BUSY' && busy) return busyOutcome(name, busy);
        throw err;
      }
    };
    return Promise.all(names.map(one));
  }

  /** One restore (or its dry run); refused at once while another job for the agent runs. */
  async restore(req: RestoreRequest, emit: (e: JobEvent) => void, signal: AbortSignal): Promise<RestoreOutcome> {
    if (this.busy.has(req.agent)) throw new ControllerError('E_JOB_BUSY', `a job for '${req.agent}' is already running`);
    return this.runJob('restore', req.agent, (ctx, both) => this.ops.restore(ctx, req, emit, both), signal, { queue: false });
  }

  /**
   * Runs `work` as a job of `kind` for `agent`: in one of the `parallel`
   * slots, never beside another job of this daemon for that agent (one
   * repository, one job), cancelled by `signal` or when the daemon stops.
   * Refused with E_JOB_BUSY while the agent has a job under way. Every kind
   * of job (backup, restore, prune, compact, check) starts here.
   */
  async runJob<T>(
    kind: JobKind,
    agent: string,
    work: (ctx: JobContext, signal: AbortSignal) => Promise<T>,
    signal: AbortSignal,
    opts: { readonly queue?: boolean } = {},
  ): Promise<T> {
    const { store, limiter } = await this.ready();
    const both = AbortSignal.any([signal, this.cancel.signal]);
    const exclusive = async (): Promise<T> => {
      if (this.busy.has(agent)) throw new ControllerError('E_JOB_BUSY', `a job for '${agent}' is already running`);
      this.busy.set(agent, { kind, since: Date.now() });
      try {
        return await work(this.context(kind, store), both);
      } finally {
        this.busy.delete(agent);
      }
    };
    // A restore does not wait for a slot: someone is waiting for it at a terminal.
    return this.track(opts.queue === false ? exclusive() : limiter.run(exclusive));
  }

  /** The job history, once recovery is done (for the scheduler, status, alerts and metrics). */
  async history(): Promise<JobStore> {
    return (await this.ready()).store;
  }

  /** The newest `limit` job records, newest first. */
  async recent(limit: number, agent?: string): Promise<JobRecord[]> {
    return (await this.ready()).store.recent(limit, agent);
  }

  /** The store and limiter once recovery is done; refused once stopping began. */
  private async ready(): Promise<{ store: JobStore; limiter: Limiter }> {
    if (this.state === 'starting') await this.starting;
    if (this.state === 'stopping' || this.state === 'stopped')
      throw new ControllerError('E_DAEMON_STOPPING', 'the controller is stopping: no new jobs');
    if (this.state !== 'running' || !this.store || !this.limiter)
      throw new ControllerError('E_DAEMON_STARTING', 'the job runner has not started');
    return { store: this.store, limiter: this.limiter };
  }

  private async track<T>(task: Promise<T>): Promise<T> {
    this.active.add(task);
    try {
      return await task;
    } finally {
      this.active.delete(task);
    }
  }

  private context(component: JobKind, store: JobStore): JobContext {
    return {
      paths: this.deps.paths,
      config: async () => pinRestartKeys(await loadConfig(this.deps.paths.root), this.deps.config),
      agent: (name) => this.deps.registry.get(name),
      link: (name) => this.link(name),
      store,
      log: this.deps.log.child({ component }),
      running: this.running,
    };
  }

  /** The live connection to an agent, or a clear error. */
  private link(name: string): AgentLink {
    const rec = this.deps.registry.get(name);
    if (!rec) throw new ControllerError('E_AGENT_UNKNOWN', `no agent named '${name}' (see 'controller agents')`);
    if (rec.revokedAt !== undefined) throw new ControllerError('E_AGENT_REVOKED', `agent '${name}' was revoked`);
    const l = this.deps.links.get(name);
    if (!l || l.state !== 'open') throw new ControllerError('E_AGENT_OFFLINE', `agent '${name}' is not connected`);
    return l;
  }
}

function busyOutcome(agent: string, busy: BusyState): BusyAgent {
  const now = Date.now();
  return {
    kind: 'backup',
    agent,
    status: 'failed',
    code: 'E_JOB_BUSY',
    reason: `a ${busy.kind} job for this agent is already running`,
    startedAt: now,
    endedAt: now,
  };
}
