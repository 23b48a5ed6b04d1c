import { errorMessage } from '@borgpull/protocol';

/** Cleanup steps, each pushed by the step it undoes, run in reverse order whatever happened. */
export type Cleanup = Array<[string, () => Promise<unknown>]>;

/** Runs cleanup steps in reverse; a failing step is logged and the rest still run. */
export async function runCleanup(cleanup: Cleanup, warn: (step: string, reason: string) => void): Promise<void> {
  for (const [what, step] of [...cleanup].reverse()) {
    try {
      await step();
    } catch (err) {
      warn(what, errorMessage(err));
    }
  }
  cleanup.length = 0;
}
