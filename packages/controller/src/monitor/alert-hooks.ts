/**
 * How one alert hook runs: a program (argv, no shell) with the event in BORGPULL_*
 * variables and as JSON on stdin, or an HTTP POST; killed (its whole process
 * group) or aborted at its time limit; what a program prints is bounded.
 * hook-runner.ts queues them, so that none holds up a job or the scheduler.
 *
 * The event carries a job's reason and code, which may quote an agent (a
 * client's file name in borg's warning, an agent's error reply): every string
 * is escaped (terminalSafe: no control character, so no newline to end an
 * HTTP header or forge a log line) and bounded before it reaches a variable,
 * the JSON or a header; headers are built from the event, the kind and the
 * agent's name (restricted at enrollment) only, and cut to printable ASCII.
 */
import { spawn } from 'node:child_process';
import { errorMessage, terminalSafe } from '@borgpull/protocol';
import type { JobKind, JobStatus } from '../jobs/job-store.js';
import { JOB_PATH } from '../jobs/borg.js';
import type { AlertEvent } from './monitor-config.js';

/** What a hook is told. */
export interface AlertPayload {
  readonly event: AlertEvent;
  readonly agent: string;
  /** The job's kind; `backup` for overdue. */
  readonly kind: JobKind;
  readonly jobId?: string;
  readonly status?: JobStatus;
  readonly code?: string;
  readonly reason?: string;
  readonly archive?: string;
  readonly trigger?: string;
  readonly startedAt?: number;
  readonly endedAt?: number;
  /** When the agent's last good backup ended (overdue, recovery), or null: never. */
  readonly lastGoodAt?: number | null;
  /** One line for people. */
  readonly message: string;
  /** When the event happened (ms). */
  readonly at: number;
}

/** Bounds for text in a payload: a reason can be long, nothing else should be. */
export const MAX_REASON = 1000;
const MAX_FIELD = 256;
/** A hook's output kept for the log. */
export const MAX_OUTPUT = 4096;
/** After SIGTERM at its time limit, a hook's process group gets this long before SIGKILL. */
const KILL_GRACE_MS = 2000;

/** Escaped (no control characters), then cut to `max` code units without splitting a surrogate pair. */
export function cleanText(s: string, max: number): string {
  let t = terminalSafe(s);
  if (t.length > max) {
    t = t.slice(0, max);
    const last = t.charCodeAt(t.length - 1);
    if (last >= 0xd800 && last <= 0xdbff) t = t.slice(0, -1);
    t += '...';
  }
  return t;
}

/** The payload with every string escaped and bounded: what every hook gets. */
export function cleanPayload(p: AlertPayload): AlertPayload {
  const f = (s: string | undefined, max = MAX_FIELD): string | undefined => (s === undefined ? undefined : cleanText(s, max));
  return {
    ...p,
    agent: cleanText(p.agent, MAX_FIELD),
    jobId: f(p.jobId),
    code: f(p.code),
    reason: f(p.reason, MAX_REASON),
    archive: f(p.archive),
    trigger: f(p.trigger),
    message: cleanText(p.message, MAX_REASON + 200),
  };
}

const iso = (ms: number | null | undefined): string => (ms === undefined || ms === null ? '' : new Date(ms).toISOString());

/** A hook program's whole environment: nothing of the daemon's, a fixed PATH, the event. */
export function hookEnv(p: AlertPayload): Record<string, string> {
  return {
    PATH: JOB_PATH,
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    HOME: '/',
    BORGPULL_EVENT: p.event,
    BORGPULL_AGENT: p.agent,
    BORGPULL_KIND: p.kind,
    BORGPULL_JOB_ID: p.jobId ?? '',
    BORGPULL_STATUS: p.status ?? '',
    BORGPULL_CODE: p.code ?? '',
    BORGPULL_REASON: p.reason ?? '',
    BORGPULL_ARCHIVE: p.archive ?? '',
    BORGPULL_TRIGGER: p.trigger ?? '',
    BORGPULL_STARTED_AT: iso(p.startedAt),
    BORGPULL_ENDED_AT: iso(p.endedAt),
    BORGPULL_LAST_GOOD_AT: iso(p.lastGoodAt),
    BORGPULL_MESSAGE: p.message,
  };
}

/** Printable ASCII only, bounded: nothing in a header value can end the header. */
export function headerSafe(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
}

const NTFY: Readonly<Record<AlertEvent, { priority: string; tags: string }>> = {
  failure: { priority: 'high', tags: 'rotating_light' },
  overdue: { priority: 'high', tags: 'hourglass' },
  recovery: { priority: 'default', tags: 'white_check_mark' },
  success: { priority: 'low', tags: 'floppy_disk' },
};

/** The request a URL hook sends: the JSON event, or ntfy's plain text with Title/Priority/Tags headers. */
export function urlRequest(hook: { format: 'json' | 'ntfy' }, p: AlertPayload): { headers: Record<string, string>; body: string } {
  if (hook.format === 'ntfy') {
    const n = NTFY[p.event];
    return {
      headers: {
        'Content-Type': 'text/plain; charset=utf-8',
        Title: headerSafe(`borgpull: ${p.kind} of ${p.agent}: ${p.event}`),
        Priority: n.priority,
        Tags: n.tags,
      },
      body: p.reason && !p.message.includes(p.reason) ? `${p.message}\n${p.reason}` : p.message,
    };
  }
  return { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(p) };
}

export interface HookResult {
  readonly ok: boolean;
  /** exit code, HTTP status, or why it failed (timeout, spawn error). */
  readonly detail: string;
  readonly output?: string;
}

/** One program hook, to its end or its time limit. */
export function runCommandHook(argv: readonly string[], p: AlertPayload, timeoutMs: number, signal?: AbortSignal): Promise<HookResult> {
  return new Promise((resolve) => {
    let child;
    try {
      child = spawn(argv[0]!, argv.slice(1), {
        env: hookEnv(p),
        cwd: '/',
        stdio: ['pipe', 'pipe', 'pipe'],
        // Its own process group: a time limit kills whatever the hook started too.
        detached: true,
      });
    } catch (err) {
      resolve({ ok: false, detail: `cannot start: ${errorMessage(err)}` });
      return;
    }
    let output = '';
    let dropped = 0;
    const keep = (b: Buffer): void => {
      const room = MAX_OUTPUT - output.length;
      if (room > 0) output += b.toString('utf8', 0, Math.min(b.length, room));
      dropped += Math.max(0, b.length - Math.max(0, room));
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    // A hook that does not read its stdin (EPIPE) is fine.
    child.stdin.on('error', () => undefined);
    child.stdin.end(JSON.stringify(p) + '\n');
    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;
    const group = (sig: NodeJS.Signals): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, sig);
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      group('SIGTERM');
      killTimer = setTimeout(() => group('SIGKILL'), KILL_GRACE_MS);
    }, timeoutMs);
    let done = false;
    const finish = (r: HookResult): void => {
      if (done) return;
      done = true;
      signal?.removeEventListener('abort', onAbort);
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      // Whatever the hook left in its group (a backgrounded child holding the pipes) goes with it.
      group('SIGKILL');
      child.stdout.destroy();
      child.stderr.destroy();
      const out = cleanText(output + (dropped ? ` [${dropped} more bytes]` : ''), MAX_OUTPUT + 100);
      resolve({ ...r, output: out });
    };
    const onAbort = (): void => group('SIGKILL');
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err) => finish({ ok: false, detail: `cannot start: ${errorMessage(err)}` }));
    child.on('exit', (code, signal) => {
      if (timedOut) finish({ ok: false, detail: `killed after its time limit (${timeoutMs / 1000}s)` });
      else finish({ ok: code === 0, detail: code === null ? `killed by ${signal ?? 'a signal'}` : `exit ${code}` });
    });
  });
}

/** One URL hook: a POST, to its answer or its time limit. Redirects are not followed. */
export async function runUrlHook(
  hook: { url: string; format: 'json' | 'ntfy' },
  p: AlertPayload,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<HookResult> {
  const req = urlRequest(hook, p);
  try {
    const res = await fetch(hook.url, {
      method: 'POST',
      headers: req.headers,
      body: req.body,
      redirect: 'manual',
      signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs),
    });
    await res.body?.cancel().catch(() => undefined);
    return { ok: res.status >= 200 && res.status < 300, detail: `HTTP ${res.status}` };
  } catch (err) {
    const timeout = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
    return { ok: false, detail: timeout ? `no answer within its time limit (${timeoutMs / 1000}s)` : errorMessage(err) };
  }
}
