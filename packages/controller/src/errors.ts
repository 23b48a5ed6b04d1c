import { BorgpullError } from '@borgpull/protocol';

/** Errors raised by the controller. Branch on `code`, never on the message. */
export class ControllerError extends BorgpullError {
  override name = 'ControllerError';
}

export function isCoded(err: unknown): err is { code: string; message: string } {
  return (
    typeof err === 'object' &&
    err !== null &&
    typeof (err as { code?: unknown }).code === 'string' &&
    typeof (err as { message?: unknown }).message === 'string'
  );
}

/** A one-line description for a user: the code's message, or the error's text. */
export function describe(err: unknown): string {
  if (err instanceof BorgpullError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}
