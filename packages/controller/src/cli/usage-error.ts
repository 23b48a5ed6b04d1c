import { BorgpullError } from '@borgpull/protocol';

/** Bad arguments: the command did not run; `main` prints the message and exits 2. */
export class UsageError extends BorgpullError {
  override name = 'UsageError';
  constructor(message: string) {
    super('E_USAGE', message);
  }
}
