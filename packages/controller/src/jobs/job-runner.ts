import { errorMessage } from '@borgpull/protocol';
import type { Logger } from 'pino';
import type { AgentLink } from '../agent-link.js';
import type { BackupArgs, BackupOutcome, CheckOutcome, NotStarted, RestoreOutcome } from '../admin/api.js';
import { loadConfig, pinRestartKeys, type ControllerConfig } from '../config.js';
import { ControllerError, type ControllerCode } from '../errors.js';
import type { Registry } from '../registry.js';
import type { StatePaths } from '../state.js';
import { runBackup } from './backup.js';
import { breakStaleJobLock, discardArchive } from './borg.js';
import { runCheck } from './check.js';
import type { JobContext } from './job-context.js';
import type { JobEvent } from './job-event.js';
import { JobQueue, type BusyState, type QueuePosition } from './job-queue.js';
import { isGood, JobStore, type JobKind, type JobRecord, type JobTrigger } from './job-store.js';
import { planPrune, runPrune, type PruneResult } from './prune.js';
import { retentionOf } from './retention.js';
import { runRestore, type RestoreRequest } from './restore.js';

export type RunnerState = 'created' | 'starting' | 'running' | 'stopping' | 'stopped';

export type { BusyState } from './job-queue.js';

/** The jobs and the repository steps of crash recovery; the daemon uses the real ones, a unit test of the runner its fakes. */
export interface JobOps {
  readonly backup: typeof runBackup;
  readonly restore: typeof runRestore;
  readonly breakStaleJobLock: typeof breakStaleJobLock;
  readonly discardArchive: typeof discardArchive;
  /** Retention after a good backup (prune, then compact); left out, no follow-up runs (unit tests of the runner). */
  readonly afterBackup?: (ctx: JobContext, job: JobRecord, signal: AbortSignal) => Promise<void>;
  readonly prune?: typeof runPrune;
  readonly planPrune?: typeof planPrune;
  readonly check?: typeof runCheck;
}

const REAL_OPS: JobOps = {
  backup: runBackup,
  restore: runRestore,
  breakStaleJobLock,
  discardArchive,
  afterBackup: pruneAfterBackup,
  prune: runPrune,
  planPrune,
  check: runCheck,
};

/**
 * After a good backup of an agent with retention: prune, then compact (each
 * its own job, trigger 'follow-up'). Whatever happens here is the prune's
 * record, never the backup's: a prune failure does not fail the backup.
 */
async function pruneAfterBackup(ctx: JobContext, job: JobRecord, signal: AbortSignal): Promise<void> {
  if (!isGood(job)) return;
  try {
    const config = await ctx.config();
    if (retentionOf(config, job.agent) === 'off') return;
    await runPrune(ctx, job.agent, 'follow-up', signal);
  } catch (err) {
    ctx.log.error({ agentId: job.agent, reason: errorMessage(err) }, 'retention after the backup failed');
  }
}

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

/** A backup asked for but not started yet: a second request for the agent joins it. */
interface QueuedBackup {
  readonly promise: Promise<JobRecord>;
  readonly emitters: Set<(e: JobEvent) => void>;
  /** Aborted when every requester has gone away. */
  readonly abort: AbortController;
  requesters: number;
  position?: QueuePosition;
}

/**
 * Runs the daemon's jobs: at most `parallel` at once, one per agent (a busy
 * agent's next job waits its turn in a fair queue), each recorded in the
 * job store. `start()` recovers from a daemon that died
 * mid-job before any command is taken: its running jobs are marked failed,
 * their locks broken and their archives discarded (their processes died with
 * it: job scripts carry pdeathsig). `stop(grace)` takes no more work, lets
 * running jobs finish for up to `grace` ms, then cancels them; each job's
 * cleanup stack runs either way.
 */
export class JobRunner {
  state: RunnerState = 'created';
  private store?: JobStore;
  private queue?: JobQueue;
  private readonly ops: JobOps;
  /** Backups queued and not started, by agent: a duplicate joins rather than queueing a second. */
  private readonly queuedBackups = new Map<string, QueuedBackup>();
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
      const store = await JobStore.open(this.deps.paths.jobs, {
        legacy: this.deps.paths.legacyJobs,
        rule: this.deps.config.history,
        log: this.deps.log,
      });
      await this.recover(store);
      this.store = store;
      this.queue = new JobQueue(this.deps.config.parallel);
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
    // Queued jobs never start: their requesters hear E_DAEMON_STOPPING now.
    this.queue?.close(new ControllerError('E_DAEMON_STOPPING', 'the controller is stopping: the job did not start'));
    this.stopping = (async () => {
      await this.starting?.catch(() => undefined);
      this.queue?.close(new ControllerError('E_DAEMON_STOPPING', 'the controller is stopping: the job did not start'));
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
      // Every job has saved its record: the history file can be closed.
      await this.store
        ?.close()
        .catch((err: unknown) => this.deps.log.error({ reason: errorMessage(err) }, 'could not close the job history'));
      this.transition('stopped');
    })();
    return this.stopping;
  }

  /** Agents with a job under way, and since when. */
  busyAgents(): ReadonlyMap<string, BusyState> {
    return this.queue?.busy() ?? new Map();
  }

  /** Jobs waiting for their turn, first in line first. */
  queuedJobs(): Array<{ agent: string; kind: JobKind }> {
    return this.queue?.queued() ?? [];
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
      try {
        return await this.backupOne(name, 'manual', emit, signal);
      } catch (err) {
        if (err instanceof NotStartedError) return notStarted(name, err);
        throw err;
      }
    };
    return Promise.all(names.map(one));
  }

  /**
   * One backup of `agent`, queued for its turn. While one is queued and not
   * started, another request for the same agent (a manual backup while the
   * scheduled one waits) joins it: both get the same job and its events. It
   * is cancelled once every requester's signal aborted (or the daemon stops).
   * Rejects with a NotStartedError when it never started.
   */
  backupOne(agent: string, trigger: JobTrigger, emit: (e: JobEvent) => void, signal: AbortSignal): Promise<JobRecord> {
    let q = this.queuedBackups.get(agent);
    if (!q) {
      // An agent that is not connected gets its 'offline' record at once, not
      // after a wait for a slot: that job touches neither the agent nor its repository.
      const offline = this.deps.links.get(agent)?.state !== 'open';
      const abort = new AbortController();
      const emitters = new Set<(e: JobEvent) => void>();
      const fanout = (e: JobEvent): void => emitters.forEach((f) => f(e));
      const entry: QueuedBackup = {
        emitters,
        abort,
        requesters: 0,
        promise: this.runJob(
          'backup',
          agent,
          (ctx, both) => {
            // Started: a request from here on queues a backup of its own.
            if (this.queuedBackups.get(agent) === entry) this.queuedBackups.delete(agent);
            return this.ops.backup(ctx, agent, fanout, both);
          },
          abort.signal,
          {
            trigger,
            queue: !offline,
            followUp: this.backupFollowUp,
            onQueued: (p) => {
              entry.position = p;
              fanout(queuedEvent(agent, p));
            },
          },
        ).finally(() => {
          if (this.queuedBackups.get(agent) === entry) this.queuedBackups.delete(agent);
        }),
      };
      q = entry;
      this.queuedBackups.set(agent, entry);
    } else {
      this.deps.log.info({ agentId: agent, trigger }, 'backup already queued for this agent: joining it');
    }
    const joined = q;
    joined.requesters++;
    joined.emitters.add(emit);
    if (joined.position) emit(queuedEvent(agent, joined.position));
    const leave = (): void => {
      joined.emitters.delete(emit);
      if (--joined.requesters === 0) joined.abort.abort(signal.reason);
    };
    if (signal.aborted) leave();
    else signal.addEventListener('abort', leave, { once: true });
    return joined.promise.finally(() => signal.removeEventListener('abort', leave));
  }

  /**
   * One restore (or its dry run). It waits for the agent's repository (a
   * backup under way ends first) but not for a `parallel` slot: someone
   * waits for it at a terminal.
   */
  async restore(req: RestoreRequest, emit: (e: JobEvent) => void, signal: AbortSignal): Promise<RestoreOutcome> {
    return this.runJob('restore', req.agent, (ctx, both) => this.ops.restore(ctx, req, emit, both), signal, {
      queue: false,
      trigger: 'manual',
      onQueued: (p) => emit(queuedEvent(req.agent, p)),
    });
  }

  /** What runs after every backup, in its hold of the agent: retention (backupOne passes it to runJob). */
  readonly backupFollowUp = async (job: JobRecord, ctx: JobContext, signal: AbortSignal): Promise<void> => {
    try {
      await this.ops.afterBackup?.(ctx, job, signal);
    } catch (err) {
      // The backup's outcome stands whatever its follow-ups do.
      this.deps.log.error({ agentId: job.agent, reason: errorMessage(err) }, 'follow-up of a backup failed');
    }
  };

  /** `controller prune NAME [--dry-run]`: a prune (then compact) job, or what one would do; in its turn for the agent either way. */
  async prune(args: { readonly name: string; readonly dryRun: boolean }, signal: AbortSignal): Promise<PruneResult> {
    await this.ready();
    this.known(args.name);
    const { prune, planPrune: plan } = this.ops;
    if (!prune || !plan) throw new ControllerError('E_INTERNAL', 'no prune job in this runner');
    return this.runJob(
      'prune',
      args.name,
      (ctx, both) => (args.dryRun ? plan(ctx, args.name, both) : prune(ctx, args.name, 'manual', both)),
      signal,
      { trigger: 'manual' },
    );
  }

  /**
   * One check job of an agent's repository (the scheduler's entry, and
   * `controller verify`'s): recorded like a backup; a damaged repository is a
   * failed job with code E_CHECK_FAILED. It needs no client: it queues like
   * any job of the agent.
   */
  async check(agent: string, trigger: JobTrigger, signal: AbortSignal = new AbortController().signal): Promise<JobRecord> {
    await this.ready();
    this.known(agent);
    const run = this.ops.check;
    if (!run) throw new ControllerError('E_INTERNAL', 'no check job in this runner');
    return this.runJob('check', agent, (ctx, both) => run(ctx, agent, trigger, both), signal, { trigger });
  }

  /** `controller verify NAME...|--all`: checks, `parallel` at a time; one outcome per agent. */
  async verify(args: BackupArgs, signal: AbortSignal): Promise<CheckOutcome[]> {
    await this.ready();
    const names = this.pick(args);
    return Promise.all(
      names.map(async (name): Promise<CheckOutcome> => {
        try {
          return await this.check(name, 'manual', signal);
        } catch (err) {
          if (err instanceof NotStartedError) return { ...notStarted(name, err), kind: 'check' };
          throw err;
        }
      }),
    );
  }

  /** The agents a command names (or all not revoked), each one known. */
  private pick(args: BackupArgs): string[] {
    const names = args.all
      ? this.deps.registry
          .agents()
          .filter((a) => a.revokedAt === undefined)
          .map((a) => a.name)
      : [...args.names];
    if (names.length === 0)
      throw new ControllerError('E_JOB_NOTHING', args.all ? 'no agents enrolled' : 'name at least one agent, or pass --all');
    for (const n of names) this.known(n);
    return names;
  }

  private known(name: string): void {
    if (!this.deps.registry.get(name)) throw new ControllerError('E_AGENT_UNKNOWN', `no agent named '${name}' (see 'controller agents')`);
  }

  /**
   * Runs `work` as a job of `kind` for `agent` once it is its turn: never
   * beside another job of this daemon for that agent (one repository, one
   * job), and in one of the `parallel` slots unless `queue` is false.
   * Waiting jobs are served first come, first served (JobQueue); `onQueued`
   * hears the job's place while it waits. Cancelled by `signal` or when the
   * daemon stops; a job that never started rejects with a NotStartedError.
   * Every kind of job (backup, restore, prune, compact, check) starts here;
   * `trigger` reaches the job's record through its context.
   */
  async runJob<T>(
    kind: JobKind,
    agent: string,
    work: (ctx: JobContext, signal: AbortSignal) => Promise<T>,
    signal: AbortSignal,
    opts: {
      readonly queue?: boolean;
      readonly trigger?: JobTrigger;
      readonly onQueued?: (p: QueuePosition) => void;
      /**
       * Runs after `work`, before the agent is released (nothing else of this
       * daemon's touches the repository in between): a good backup's prune
       * and compact.
       */
      readonly followUp?: (result: T, ctx: JobContext, signal: AbortSignal) => Promise<void>;
    } = {},
  ): Promise<T> {
    const { store, queue } = await this.ready();
    const both = AbortSignal.any([signal, this.cancel.signal]);
    const turn = async (): Promise<T> => {
      let release: () => void;
      try {
        release = await queue.acquire(agent, kind, opts.queue !== false, both, opts.onQueued);
      } catch (err) {
        throw new NotStartedError(err);
      }
      try {
        const result = await work(this.context(kind, store, opts.trigger ?? 'manual'), both);
        if (opts.followUp) await opts.followUp(result, this.context('prune', store, 'follow-up'), both);
        return result;
      } finally {
        release();
      }
    };
    return this.track(turn());
  }

  /** The job history, once recovery is done (for the scheduler, status, alerts and metrics). */
  async history(): Promise<JobStore> {
    return (await this.ready()).store;
  }

  /** The newest `limit` job records, newest first. */
  async recent(limit: number, agent?: string): Promise<JobRecord[]> {
    return (await this.ready()).store.recent(limit, agent);
  }

  /** The store and queue once recovery is done; refused once stopping began. */
  private async ready(): Promise<{ store: JobStore; queue: JobQueue }> {
    if (this.state === 'starting') await this.starting;
    if (this.state === 'stopping' || this.state === 'stopped')
      throw new ControllerError('E_DAEMON_STOPPING', 'the controller is stopping: no new jobs');
    if (this.state !== 'running' || !this.store || !this.queue)
      throw new ControllerError('E_DAEMON_STARTING', 'the job runner has not started');
    return { store: this.store, queue: this.queue };
  }

  private async track<T>(task: Promise<T>): Promise<T> {
    this.active.add(task);
    try {
      return await task;
    } finally {
      this.active.delete(task);
    }
  }

  private context(component: JobKind, store: JobStore, trigger: JobTrigger): JobContext {
    return {
      trigger,
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

/** A job that never started: it was cancelled or the daemon stopped while it waited for its turn. */
export class NotStartedError extends ControllerError {
  constructor(cause: unknown) {
    super(
      cause instanceof ControllerError ? (cause.code as ControllerCode) : 'E_JOB_CANCELLED',
      cause instanceof Error ? cause.message : String(cause),
      { cause },
    );
  }
}

function notStarted(agent: string, err: NotStartedError): NotStarted {
  const now = Date.now();
  return { kind: 'backup', agent, status: 'failed', code: err.code, reason: err.message, startedAt: now, endedAt: now };
}

function queuedEvent(agent: string, p: QueuePosition): JobEvent {
  return { agent, jobId: '', phase: 'queued', position: p.position, waitingFor: p.waitingFor };
}
