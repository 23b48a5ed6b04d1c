/**
 * Runs alert hooks in the background (alert-hooks.ts says how one runs):
 * `fire` queues and returns at once, at most `concurrency` run at a time,
 * each ends at its time limit, and what each did is logged.
 */
import { errorMessage } from '@borgpull/protocol';
import type { Logger } from 'pino';
import { cleanPayload, runCommandHook, runUrlHook, type AlertPayload, type HookResult } from './alert-hooks.js';
import type { AlertHook } from './monitor-config.js';

/** Where a hook's URL is logged: without its path, which may be a secret (an ntfy topic, a healthchecks UUID). */
function urlForLog(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '?';
  }
}

/**
 * Runs hooks in the background, `concurrency` at a time; a queue of more than
 * `maxQueued` drops the newest with a warning (a hook that hangs for its whole
 * time limit on every event must not grow memory without bound).
 */
export class HookRunner {
  private running = 0;
  private readonly queue: Array<() => Promise<void>> = [];
  private readonly idleWaiters: Array<() => void> = [];
  private stopped = false;
  /** Kills every running hook when the daemon stops. */
  private readonly abort = new AbortController();

  constructor(
    private readonly log: Logger,
    private readonly concurrency = 4,
    private readonly maxQueued = 256,
  ) {}

  /** Queues every hook for `payload` and returns at once; never throws. */
  fire(payload: AlertPayload, hooks: readonly AlertHook[], defaultTimeout: number): void {
    if (this.stopped || hooks.length === 0) return;
    const p = cleanPayload(payload);
    for (const [i, hook] of hooks.entries()) {
      if (this.queue.length >= this.maxQueued) {
        this.log.warn({ event: p.event, agentId: p.agent, hook: i }, 'alert hook dropped: too many hooks waiting');
        continue;
      }
      this.queue.push(() => this.runOne(p, hook, i, (hook.timeout ?? defaultTimeout) * 1000));
    }
    this.pump();
  }

  private async runOne(p: AlertPayload, hook: AlertHook, index: number, timeoutMs: number): Promise<void> {
    const what = 'command' in hook ? { command: hook.command[0] } : { url: urlForLog(hook.url), format: hook.format };
    const started = Date.now();
    let r: HookResult;
    try {
      const signal = this.abort.signal;
      r = 'command' in hook ? await runCommandHook(hook.command, p, timeoutMs, signal) : await runUrlHook(hook, p, timeoutMs, signal);
    } catch (err) {
      r = { ok: false, detail: errorMessage(err) };
    }
    const fields = { event: p.event, agentId: p.agent, jobId: p.jobId, hook: index, ...what, result: r.detail, ms: Date.now() - started };
    if (r.ok) this.log.info({ ...fields, output: r.output || undefined }, 'alert hook ran');
    else this.log.warn({ ...fields, output: r.output || undefined }, 'alert hook failed');
  }

  private pump(): void {
    while (this.running < this.concurrency && this.queue.length > 0) {
      const task = this.queue.shift()!;
      this.running++;
      void task().finally(() => {
        this.running--;
        this.pump();
      });
    }
    if (this.running === 0 && this.queue.length === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Resolves once no hook runs or waits (tests, and a stopping daemon). */
  idle(): Promise<void> {
    if (this.running === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Takes no more hooks; those queued or running get `graceMs` (an alert for
   * a job cancelled by the stop still goes out), then the rest are dropped
   * and killed: a hook never outlives the daemon.
   */
  async stop(graceMs = 0): Promise<void> {
    this.stopped = true;
    const cut = (): void => {
      this.queue.length = 0;
      this.abort.abort();
    };
    if (graceMs <= 0) cut();
    const timer = graceMs > 0 ? setTimeout(cut, graceMs) : undefined;
    await this.idle();
    clearTimeout(timer);
  }
}
