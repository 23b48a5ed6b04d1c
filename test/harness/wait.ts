export interface WaitOptions {
  /** Give up after this many ms (default 10 000). */
  timeoutMs?: number;
  /** Poll interval in ms (default 20). */
  intervalMs?: number;
  /** Called once per poll; a returned string aborts the wait with that reason (e.g. "sshd exited"). */
  abortIf?: () => string | undefined;
  /** Extra context for the timeout message (e.g. recent log lines). */
  context?: () => string;
}

/**
 * Polls `check` until it returns something other than undefined/false, and
 * returns that; throws naming `what` on timeout. No fixed sleeps.
 */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  opts: WaitOptions = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = opts.intervalMs ?? 20;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    const abort = opts.abortIf?.();
    if (abort !== undefined) throw new Error(`gave up waiting for ${what}: ${abort}`);
    if (Date.now() > deadline) {
      const ctx = opts.context?.();
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${ctx ? `\n${ctx}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
