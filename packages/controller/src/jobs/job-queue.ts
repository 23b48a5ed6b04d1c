import { ControllerError } from '../errors.js';
import type { JobKind } from './job-store.js';

/** An agent with a job under way: nothing else runs on its repository until that job ends. */
export interface BusyState {
  readonly kind: JobKind;
  readonly since: number;
}

/** Where a waiting job stands: its place in the queue (1 = next) and what it waits for. */
export interface QueuePosition {
  readonly position: number;
  readonly waitingFor: 'agent' | 'slot';
}

interface Waiter {
  readonly agent: string;
  readonly kind: JobKind;
  readonly slot: boolean;
  readonly grant: () => void;
  readonly refuse: (err: Error) => void;
  readonly onWait?: (p: QueuePosition) => void;
  last?: QueuePosition;
}

/**
 * Hands out turns to jobs: one job per agent (one repository, one job: borg
 * locks it, and a prune beside a backup would race it) and at most `parallel`
 * jobs holding a slot. Waiters are served first come, first served across
 * all agents; one whose agent is busy does not hold up those behind it for
 * other agents. A job that needs no slot (a restore: someone waits for it at
 * a terminal) still waits for its agent.
 */
export class JobQueue {
  private readonly waiting: Waiter[] = [];
  private readonly holders = new Map<string, BusyState>();
  private slotsUsed = 0;
  private closed?: Error;

  constructor(private readonly parallel: number) {}

  /**
   * Resolves with the job's release once it is its turn; `onWait` hears its
   * position whenever it changes while it waits. Refused with E_JOB_CANCELLED
   * when `signal` aborts first, or with the close error once closed.
   */
  acquire(agent: string, kind: JobKind, slot: boolean, signal: AbortSignal, onWait?: (p: QueuePosition) => void): Promise<() => void> {
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      let done = false;
      const release = (): void => {
        if (done) return;
        done = true;
        this.holders.delete(agent);
        if (slot) this.slotsUsed--;
        this.pump();
      };
      const onAbort = (): void => {
        const i = this.waiting.indexOf(w);
        if (i < 0) return;
        this.waiting.splice(i, 1);
        reject(new ControllerError('E_JOB_CANCELLED', `cancelled while queued: ${reasonText(signal.reason)}`));
        this.pump();
      };
      const w: Waiter = {
        agent,
        kind,
        slot,
        onWait,
        grant: () => {
          signal.removeEventListener('abort', onAbort);
          this.holders.set(agent, { kind, since: Date.now() });
          if (slot) this.slotsUsed++;
          resolve(release);
        },
        refuse: (err) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      if (signal.aborted) {
        reject(new ControllerError('E_JOB_CANCELLED', `cancelled while queued: ${reasonText(signal.reason)}`));
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(w);
      this.pump();
    });
  }

  /** Refuses every waiting job with `err`, and every later one; running jobs keep their turn until released. */
  close(err: Error): void {
    this.closed = err;
    for (const w of this.waiting.splice(0)) w.refuse(err);
  }

  /** Agents with a job under way. */
  busy(): ReadonlyMap<string, BusyState> {
    return this.holders;
  }

  /** Waiting jobs, first in line first. */
  queued(): Array<{ agent: string; kind: JobKind }> {
    return this.waiting.map((w) => ({ agent: w.agent, kind: w.kind }));
  }

  private pump(): void {
    for (let i = 0; i < this.waiting.length;) {
      const w = this.waiting[i]!;
      if (this.holders.has(w.agent) || (w.slot && this.slotsUsed >= this.parallel)) {
        i++;
        continue;
      }
      this.waiting.splice(i, 1);
      w.grant();
    }
    this.waiting.forEach((w, i) => {
      const now: QueuePosition = { position: i + 1, waitingFor: this.holders.has(w.agent) ? 'agent' : 'slot' };
      if (w.last?.position === now.position && w.last.waitingFor === now.waitingFor) return;
      w.last = now;
      w.onWait?.(now);
    });
  }
}

function reasonText(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}
