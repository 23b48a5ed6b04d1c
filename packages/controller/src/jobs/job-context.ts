import type { Logger } from 'pino';
import type { AgentLink } from '../agent-link.js';
import type { ControllerConfig } from '../config.js';
import type { AgentRecord } from '../registry.js';
import type { StatePaths } from '../state.js';
import type { JobStore, JobTrigger } from './job-store.js';

/**
 * What one job may use, handed down by the JobRunner: no daemon, no registry
 * to write to, no admin socket.
 */
export interface JobContext {
  /** What started this job (a person, the schedule, a connection, a retry): the job's record keeps it. */
  readonly trigger: JobTrigger;
  readonly paths: StatePaths;
  /**
   * config.json as it is now (read at every job, so edits apply without a
   * restart), with the running daemon's values of the keys checked at its
   * start (config.ts RESTART_KEYS): an edited sshPort or tunnelUser never
   * reaches a job unchecked.
   */
  readonly config: () => Promise<ControllerConfig>;
  /** The registry's record of an agent (its tunnel port, its name). */
  readonly agent: (name: string) => AgentRecord | undefined;
  /** The agent's live connection, or an E_AGENT_UNKNOWN / E_AGENT_REVOKED / E_AGENT_OFFLINE error. */
  readonly link: (name: string) => AgentLink;
  readonly store: JobStore;
  readonly log: Logger;
  /**
   * Ids of the jobs of this daemon that are running now: a borg lock held by
   * one of them is not stale. A job adds its id when it starts and removes it
   * once its processes are gone.
   */
  readonly running: Set<string>;
}
