import { errorMessage } from '@borgpull/protocol';
import type { Logger } from 'pino';
import type { ControllerDaemon } from '../daemon.js';
import { ControllerError } from '../errors.js';
import { checkAgentName } from '../registry.js';
import { breakStaleJobLock, discardArchive, listArchives } from './borg.js';
import { runBackup, type BackupContext } from './backup.js';
import { checkRestore, runRestore } from './restore.js';
import { JobStore, type JobRecord } from './job-store.js';
import { Limiter } from './limiter.js';
import type { JobEvent } from './progress.js';

/** Adds the job admin commands (backup, archives, jobs) to the daemon. */
export function registerJobs(daemon: ControllerDaemon, log: Logger): void {
  let store: JobStore | undefined;
  let limiter: Limiter | undefined;
  const running = new Set<string>();
  const busyAgents = new Set<string>();
  const jobs = new AbortController();
  const active = new Set<Promise<unknown>>();

  const ready = async (): Promise<{ store: JobStore; limiter: Limiter }> => {
    if (!store) {
      store = await JobStore.open(daemon.paths.jobs);
      const stale = await store.failInterrupted();
      if (stale.length) log.warn({ jobs: stale.map((j) => j.id) }, 'marked jobs interrupted by a previous stop as failed');
      // Their processes died with the previous daemon: break their locks, drop their archives.
      for (const j of stale) {
        if (j.kind !== 'backup' || j.archive === undefined || !daemon.registry.get(j.agent)) continue;
        try {
          await breakStaleJobLock(daemon.paths, j.agent, () => false);
          const gone = await discardArchive(daemon.paths, j.agent, j.archive);
          if (gone.length) log.warn({ agentId: j.agent, archives: gone }, 'deleted the archive of an interrupted backup');
        } catch (err) {
          log.error({ agentId: j.agent, reason: errorMessage(err) }, 'could not clean up after an interrupted backup');
        }
      }
    }
    limiter ??= new Limiter(daemon.config.parallel);
    return { store, limiter };
  };

  daemon.onStop(async (reason) => {
    jobs.abort(new ControllerError('E_JOB_CANCELLED', `controller stopping (${reason})`));
    await Promise.allSettled([...active]);
  });

  daemon.addAdminHandlers({
    backup: async (args, emit, signal) => {
      const { store: s, limiter: l } = await ready();
      const names = args['all'] === true
        ? daemon.registry.agents().filter((a) => a.revokedAt === undefined).map((a) => a.name)
        : Array.isArray(args['names'])
          ? args['names'].map((n) => checkAgentName(String(n)))
          : [];
      if (names.length === 0) {
        throw new ControllerError('E_JOB_NOTHING', args['all'] === true ? 'no agents enrolled' : 'name at least one agent, or pass --all');
      }
      for (const n of names) {
        if (!daemon.registry.get(n)) throw new ControllerError('E_AGENT_UNKNOWN', `no agent named '${n}' (see 'controller agents')`);
      }
      const ctx: BackupContext = { daemon, store: s, log: log.child({ component: 'backup' }), running };
      const both = AbortSignal.any([signal, jobs.signal]);
      const one = async (name: string): Promise<JobRecord> => {
        emit({ agent: name, jobId: '', phase: 'queued' } satisfies JobEvent);
        return l.run(async () => {
          if (busyAgents.has(name)) {
            const rec: JobRecord = {
              id: 'skipped',
              kind: 'backup',
              agent: name,
              startedAt: Date.now(),
              endedAt: Date.now(),
              status: 'failed',
              code: 'E_JOB_BUSY',
              reason: 'a job for this agent is already running',
            };
            return rec;
          }
          busyAgents.add(name);
          try {
            return await runBackup(ctx, name, emit, both);
          } finally {
            busyAgents.delete(name);
          }
        });
      };
      const all = Promise.all(names.map(one));
      active.add(all);
      try {
        return await all;
      } finally {
        active.delete(all);
      }
    },
    restore: async (args, emit, signal) => {
      const { store: s } = await ready();
      const req = checkRestore(args);
      checkAgentName(req.agent);
      if (busyAgents.has(req.agent)) throw new ControllerError('E_JOB_BUSY', `a job for '${req.agent}' is already running`);
      busyAgents.add(req.agent);
      const task = runRestore({ daemon, store: s, log: log.child({ component: 'restore' }), running }, req, emit, AbortSignal.any([signal, jobs.signal]));
      active.add(task);
      try {
        return await task;
      } finally {
        active.delete(task);
        busyAgents.delete(req.agent);
      }
    },
    archives: async (args) => {
      const name = checkAgentName(String(args['name'] ?? ''));
      if (!daemon.registry.get(name)) throw new ControllerError('E_AGENT_UNKNOWN', `no agent named '${name}' (see 'controller agents')`);
      return listArchives(daemon.paths, name);
    },
    jobs: async (args) => {
      const { store: s } = await ready();
      const limit = typeof args['limit'] === 'number' ? args['limit'] : 20;
      return s.recent(limit, typeof args['agent'] === 'string' ? args['agent'] : undefined);
    },
  });
}
