export interface WaitOptions {
  /** Give up after this many ms (default 10 000). */
  timeoutMs?: number;
  /** Poll interval in ms (default 20). */
  intervalMs?: number;
  /** Called once per poll; a returned string aborts the wait with that reason (e.g. "sshd exited"). */
  abortIf?: () => string | undefined;
}

/** Poll `check` until it returns true; throws naming `what` on timeout. No fixed sleeps. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  opts: WaitOptions = {},
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = opts.intervalMs ?? 20;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    const abort = opts.abortIf?.();
    if (abort !== undefined) throw new Error(`gave up waiting for ${what}: ${abort}`);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
