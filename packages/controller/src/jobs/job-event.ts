/** What a job tells the CLI while it runs (the `backup` and `restore` admin commands' events). */
export interface JobEvent {
  readonly agent: string;
  readonly jobId: string;
  readonly phase: 'queued' | 'tunnel' | 'borg' | 'cleanup' | 'done' | 'restore';
  readonly nfiles?: number;
  readonly originalSize?: number;
  readonly deduplicatedSize?: number;
  readonly path?: string;
  readonly bytes?: number;
  readonly totalBytes?: number;
  readonly message?: string;
  /** While queued: the job's place in the queue (1 = next) and what it waits for (the agent's running job, or a `parallel` slot). */
  readonly position?: number;
  readonly waitingFor?: 'agent' | 'slot';
}
